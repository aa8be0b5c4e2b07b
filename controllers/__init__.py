"""headwater's controllers, their toolkit and the `headwater` command.

Importing this package first makes the `kubernetes` client's re-exporting
package `__init__`s lazy (`controllers.toolkit.lazyimport`): each controller
process then loads the few API and model classes it uses, not all of them.
"""

from controllers.toolkit import lazyimport

lazyimport.install()
