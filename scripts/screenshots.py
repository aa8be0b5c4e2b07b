"""Take the dashboard screenshots in docs/images/ again.

They are the browser tests' own views (tests/integration/dashboard/test_browser.py,
with HEADWATER_DASHBOARD_SCREENSHOTS set): a real control plane, controllers, git
server and chromium, so the pictures show what the tests check. Uses
HEADWATER_TEST_KUBECONFIG when set (a control plane already up), else starts one.

    .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGES = REPO_ROOT / "docs" / "images"


def main() -> int:
    env = dict(os.environ, HEADWATER_DASHBOARD_SCREENSHOTS=str(IMAGES))
    tests = [
        "tests/integration/dashboard/test_browser.py::"
        "test_overview_lists_the_synced_objects_and_shows_a_new_commit_without_a_reload",
        "tests/integration/dashboard/test_browser.py::"
        "test_a_kubectl_scale_drift_shows_with_its_field_and_the_reconcile_button_reconciles",
    ]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    code = subprocess.call(command, cwd=REPO_ROOT, env=env)
    if code == 0:
        for image in sorted(IMAGES.glob("dashboard-*.png")):
            print(f"wrote {image.relative_to(REPO_ROOT)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
