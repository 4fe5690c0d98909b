"""The function app: assembles the blueprints, nothing else.

Azure's Python worker (and `python -m localdev`) imports this module and indexes the single
top-level `FunctionApp`. Importing it must stay cheap: no settings read, no client built, no network.
"""

import azure.functions as func

from blueprints.cleanup import bp as cleanup
from blueprints.events import bp as events
from blueprints.meta import bp as meta
from blueprints.queues import bp as queues
from blueprints.rotation import bp as rotation
from blueprints.secrets_http import bp as secrets_http
from blueprints.status import bp as status

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in (secrets_http, rotation, cleanup, events, meta, status, queues):
    app.register_functions(blueprint)
