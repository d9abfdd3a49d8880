"""moto's STS alone, over https: `python3 .ci/sts.py HOST PORT CERT KEY`.

moto's server picks a service from a request's signature or body; an AWS
client sends STS's AssumeRoleWithWebIdentity unsigned, as a POST with the
parameters in the query string, which moto would take for S3. This serves
moto's own STS application for every request (but moto's /moto-api).
"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


class StsOnly(DomainDispatcherApplication):
    def get_application(self, environ):
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return super().get_application(environ)
        with self.lock:
            if "sts" not in self.app_instances:
                self.app_instances["sts"] = self.create_app("sts")
            return self.app_instances["sts"]


host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
run_simple(host, port, StsOnly(create_backend_app), ssl_context=(cert, key), threaded=True)
