"""Airflow 3's Python client (apache-airflow-client 3.x, from PyPI) against
`shelfline serve`'s `/api/v2`, as an Airflow 3 user drives a DAG: a token
from `POST /auth/token`, health, the DAG, pause and unpause, a trigger with a
logical date in another time zone, runs listed and filtered, task instances
and their logs, a clear that reruns the publication, and a run marked
failed while its sensor waits.

    python airflow3.py URL USER PASSWORD DAG_ID DATE MISSING_DATE

DATE has its raw files in place; MISSING_DATE has none; no run of DAG_ID
exists yet. Exits non-zero with the failed check's message.
"""

import json
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import airflow_client.client as client
from airflow_client.client.api import dag_api, dag_run_api, monitor_api, task_instance_api
from airflow_client.client.exceptions import NotFoundException, UnauthorizedException
from airflow_client.client.models import (
    ClearTaskInstancesBody,
    ClearTaskInstancesBodyTaskIdsInner,
    DAGPatchBody,
    DAGRunPatchBody,
    TriggerDAGRunPostBody,
)

from wait import wait_for

url, user, password, dag_id, day, missing_day = sys.argv[1:7]


def login(username, secret):
    """Airflow 3's token login, as the client's README does it."""
    request = urllib.request.Request(
        f"{url}/auth/token",
        data=json.dumps({"username": username, "password": secret}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201, response.status
        return json.load(response)["access_token"]


try:
    login(user, "wrong")
    raise AssertionError("a wrong password got a token")
except urllib.error.HTTPError as error:
    assert error.code == 401, error.code

with client.ApiClient(client.Configuration(host=url, access_token="forged.00")) as api:
    try:
        dag_api.DAGApi(api).get_dag(dag_id)
        raise AssertionError("a forged token was accepted")
    except UnauthorizedException:
        pass

configuration = client.Configuration(host=url, access_token=login(user, password))


with client.ApiClient(configuration) as api:
    dags = dag_api.DAGApi(api)
    runs = dag_run_api.DagRunApi(api)
    tasks = task_instance_api.TaskInstanceApi(api)

    health = monitor_api.MonitorApi(api).get_health()
    assert health.metadatabase.status == "healthy", health

    assert dags.get_dag(dag_id).is_paused is False
    paused = dags.patch_dag(dag_id, DAGPatchBody(is_paused=True), update_mask=["is_paused"])
    assert paused.is_paused is True, paused

    # A trigger while paused is queued and waits; the logical date, sent as
    # midnight in UTC+5, is the sender's day and comes back as sent.
    sent = datetime.fromisoformat(day).replace(tzinfo=timezone(timedelta(hours=5)))
    body = TriggerDAGRunPostBody(dag_run_id="client3-run", logical_date=sent, conf={})
    run = runs.trigger_dag_run(dag_id, body)
    assert run.logical_date == sent and run.logical_date.utcoffset() == timedelta(hours=5), run
    time.sleep(3)
    assert runs.get_dag_run(dag_id, "client3-run").state.value == "queued"
    assert dags.patch_dag(dag_id, DAGPatchBody(is_paused=False)).is_paused is False
    done = wait_for(runs, dag_id, "client3-run", {"success", "failed"})
    assert done.state.value == "success", tasks.get_task_instances(dag_id, "client3-run")

    listed = runs.get_dag_runs(dag_id, state=["success", "failed"], order_by=["-logical_date"])
    assert [r.dag_run_id for r in listed.dag_runs] == ["client3-run"], listed
    assert runs.get_dag_runs(dag_id, state=["queued"]).total_entries == 0

    instances = tasks.get_task_instances(dag_id, "client3-run").task_instances
    states = {ti.task_id: ti.state.value for ti in instances}
    assert states["publish"] == "success" and states["extract_sales"] == "skipped", states
    assert tasks.get_task_instance(dag_id, "client3-run", "publish").try_number == 1

    log = tasks.get_log(dag_id, "client3-run", "wait_for_raw", 1).content.actual_instance
    events = [message.event for message in log]
    assert events[0].startswith("attempt 1 of") and events[-1].startswith("succeeded"), events

    # Clear the publication: a dry run lists what would run again (the
    # tasks that share the staged output, and notify); then it runs again.
    def clear(dry_run):
        request = ClearTaskInstancesBody(
            dag_run_id="client3-run",
            task_ids=[ClearTaskInstancesBodyTaskIdsInner("publish")],
            only_failed=False,
            dry_run=dry_run,
        )
        return tasks.post_clear_task_instances(dag_id, request).task_instances

    listed = {ti.task_id for ti in clear(dry_run=True)}
    assert listed == {"transform", "quality", "publish", "notify"}, listed
    assert runs.get_dag_run(dag_id, "client3-run").state.value == "success"
    clear(dry_run=False)
    done = wait_for(runs, dag_id, "client3-run", {"success", "failed"})
    assert done.state.value == "success", done
    assert tasks.get_task_instance(dag_id, "client3-run", "publish").try_number == 2

    # A date without files: the sensor waits, its log says for what, and
    # marking the run failed ends it.
    waiting_date = datetime.fromisoformat(missing_day).replace(tzinfo=timezone.utc)
    runs.trigger_dag_run(dag_id, TriggerDAGRunPostBody(dag_run_id="waiting3-run", logical_date=waiting_date))

    def sensor_log():
        try:
            log = tasks.get_log(dag_id, "waiting3-run", "wait_for_raw", 1).content.actual_instance
            return " ".join(message.event for message in log)
        except NotFoundException:  # the sensor has not started yet
            return ""

    deadline = time.monotonic() + 60
    while "waiting for" not in sensor_log():
        assert time.monotonic() < deadline, "the sensor's log never said what it waits for"
        time.sleep(0.5)
    assert f"sales_{missing_day}" in sensor_log(), sensor_log()
    runs.patch_dag_run(dag_id, "waiting3-run", DAGRunPatchBody(state="failed"))
    assert wait_for(runs, dag_id, "waiting3-run", {"failed"}, 10).state.value == "failed"

print("airflow client 3.x: ok")
