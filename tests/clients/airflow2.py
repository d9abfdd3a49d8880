"""Airflow's own Python client (apache-airflow-client 2.x, from PyPI) against
`shelfline serve`, as an Airflow user drives a DAG: health, the DAG, pause
and unpause, a trigger with a logical date in another time zone, runs
listed and filtered, task instances and their logs, a clear that reruns the
publication, and a run marked failed while its sensor waits.

    python airflow2.py URL USER PASSWORD DAG_ID DATE MISSING_DATE

DATE has its raw files in place; MISSING_DATE has none. Exits non-zero with
the failed check's message.
"""

import sys
import time
from datetime import date, datetime, timedelta, timezone

import airflow_client.client as client
from airflow_client.client.api import dag_api, dag_run_api, monitoring_api, task_instance_api
from airflow_client.client.exceptions import NotFoundException
from airflow_client.client.model.clear_task_instances import ClearTaskInstances
from airflow_client.client.model.dag import DAG
from airflow_client.client.model.dag_run import DAGRun
from airflow_client.client.model.update_dag_run_state import UpdateDagRunState

from wait import wait_for

url, user, password, dag_id, day, missing_day = sys.argv[1:7]
configuration = client.Configuration(host=f"{url}/api/v1", username=user, password=password)


with client.ApiClient(configuration) as api:
    dags = dag_api.DAGApi(api)
    runs = dag_run_api.DAGRunApi(api)
    tasks = task_instance_api.TaskInstanceApi(api)

    health = monitoring_api.MonitoringApi(api).get_health()
    assert health.metadatabase.status.value == "healthy", health

    assert dags.get_dag(dag_id).is_paused is False
    paused = dags.patch_dag(dag_id, DAG(is_paused=True), update_mask=["is_paused"])
    assert paused.is_paused is True, paused

    # A trigger while paused is queued and waits; the logical date, sent as
    # midnight in UTC+5, is the sender's day and comes back as sent.
    sent = datetime.fromisoformat(day).replace(tzinfo=timezone(timedelta(hours=5)))
    run = runs.post_dag_run(dag_id, DAGRun(dag_run_id="client-run", logical_date=sent, conf={}))
    assert run.logical_date == sent and run.logical_date.utcoffset() == timedelta(hours=5), run
    time.sleep(3)
    assert runs.get_dag_run(dag_id, "client-run").state.value == "queued"
    assert dags.patch_dag(dag_id, DAG(is_paused=False), update_mask=["is_paused"]).is_paused is False
    done = wait_for(runs, dag_id, "client-run", {"success", "failed"})
    assert done.state.value == "success", tasks.get_task_instances(dag_id, "client-run")

    listed = runs.get_dag_runs(dag_id, state=["success", "failed"], order_by="-execution_date")
    assert [r.dag_run_id for r in listed.dag_runs] == ["client-run"], listed
    assert runs.get_dag_runs(dag_id, state=["queued"]).total_entries == 0

    instances = tasks.get_task_instances(dag_id, "client-run").task_instances
    states = {ti.task_id: ti.state.value for ti in instances}
    assert states["publish"] == "success" and states["extract_sales"] == "skipped", states
    assert tasks.get_task_instance(dag_id, "client-run", "publish").try_number == 1

    log = tasks.get_log(dag_id, "client-run", "wait_for_raw", 1).content
    assert "attempt 1 of" in log and "succeeded" in log, log

    # Clear the publication: a dry run lists what would run again (the
    # tasks that share the staged output, and notify); then it runs again.
    def clear(dry_run):
        request = ClearTaskInstances(dag_run_id="client-run", task_ids=["publish"], only_failed=False, dry_run=dry_run)
        return dags.post_clear_task_instances(dag_id, request).task_instances

    listed = {ti.task_id for ti in clear(dry_run=True)}
    assert listed == {"transform", "quality", "publish", "notify"}, listed
    assert runs.get_dag_run(dag_id, "client-run").state.value == "success"
    clear(dry_run=False)
    done = wait_for(runs, dag_id, "client-run", {"success", "failed"})
    assert done.state.value == "success", done
    assert tasks.get_task_instance(dag_id, "client-run", "publish").try_number == 2
    assert "succeeded" in tasks.get_log(dag_id, "client-run", "publish", 2).content

    # A date without files: the sensor waits, its log says for what, and
    # marking the run failed ends it.
    runs.post_dag_run(dag_id, DAGRun(dag_run_id="waiting-run", logical_date=datetime.fromisoformat(missing_day).replace(tzinfo=timezone.utc), conf={}))
    def sensor_log():
        try:
            return tasks.get_log(dag_id, "waiting-run", "wait_for_raw", 1).content
        except NotFoundException:  # the sensor has not started yet
            return ""

    deadline = time.monotonic() + 60
    while "waiting for" not in sensor_log():
        assert time.monotonic() < deadline, "the sensor's log never said what it waits for"
        time.sleep(0.5)
    assert f"sales_{missing_day}" in sensor_log(), sensor_log()
    runs.update_dag_run_state(dag_id, "waiting-run", UpdateDagRunState(state="failed"))
    assert wait_for(runs, dag_id, "waiting-run", {"failed"}, 10).state.value == "failed"

print("airflow client 2.x: ok")
