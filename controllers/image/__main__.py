"""`python -m controllers.image`: run the image controller alone."""

from __future__ import annotations

import sys

from controllers.toolkit.runtime.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("image"))
