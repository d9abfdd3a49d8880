"""Airflow 3's Python client (apache-airflow-client 3.x, from PyPI) against
`shelfline serve`, which speaks Airflow 2's REST API (v1) only: the client's
login (`POST /auth/token`) and its calls (`/api/v2/...`) get a 404 whose
detail says which client to install.

    python airflow3.py URL USER PASSWORD DAG_ID
"""

import json
import sys
import urllib.error
import urllib.request

import airflow_client.client as client
from airflow_client.client.api import dag_run_api

url, user, password, dag_id = sys.argv[1:5]
ADVICE = "apache-airflow-client<3"

login = urllib.request.Request(
    f"{url}/auth/token",
    data=json.dumps({"username": user, "password": password}).encode(),
    headers={"Content-Type": "application/json"},
)
try:
    urllib.request.urlopen(login)
    raise AssertionError("POST /auth/token answered 2xx")
except urllib.error.HTTPError as error:
    assert error.code == 404, error.code
    detail = json.load(error)["detail"]
    assert ADVICE in detail, detail

with client.ApiClient(client.Configuration(host=url, access_token="unused")) as api:
    try:
        dag_run_api.DagRunApi(api).get_dag_runs(dag_id)
        raise AssertionError("GET /api/v2/dags/.../dagRuns answered 2xx")
    except client.exceptions.NotFoundException as error:
        assert ADVICE in error.body, error.body

print("airflow client 3.x: told to use the 2.x client")
