"""Issue 19's entry points meet bad input with a clear refusal that changes nothing; budgets
per endpoint hold only that endpoint's jobs; an endpoint answering Not Found trips its
breaker; the dashboard draws the spend chart."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db import get_session
from app.endpoints import breaker, budgets
from app.models import IDLE, BilledSeconds, Job, utcnow
from app.settings import Settings, SettingsError
from tests.app.conftest import csrf_token, login_admin


@pytest.mark.parametrize(
    "env, says",
    [
        ({"BUDGET_USD_PER_DAY_BY_ENDPOINT": "video"}, "BUDGET_USD_PER_DAY_BY_ENDPOINT"),
        ({"BUDGET_USD_PER_MONTH_BY_ENDPOINT": "video=lots"}, "name=usd pairs"),
        ({"BUDGET_USD_PER_DAY": "-1"}, "BUDGET_USD_PER_DAY"),
        ({"BREAKER_CRASHES": "0"}, "BREAKER_CRASHES"),
        ({"GPU_PRICE_PER_SECOND": "cheap"}, "GPU_PRICE_PER_SECOND"),
        ({"GPU_POOLS": "AMPERE_1000"}, "no price for GPU pool 'AMPERE_1000'"),
        ({"GPU_POOLS": "BLACKWELL_96"}, "set GPU_PRICE_PER_SECOND"),
    ],
)
def test_bad_spend_settings_are_refused_naming_the_variable(env, says):
    with pytest.raises(SettingsError, match=says):
        Settings.from_env({"APP_ENV": "test", **env})


def test_bad_budget_and_resume_commands_change_nothing(app, runner):
    for args, says in [
        (["admin", "budget", "--set", "day=-5"], "a budget must be 0"),
        (["admin", "budget", "--set", "day=lots"], "day=lots"),
        (["admin", "budget", "--set", "week=5"], "use day=USD or month=USD"),
        (["admin", "resume", "nowhere"], "is not open"),
    ]:
        result = runner.invoke(args=args)
        assert result.exit_code != 0 and says in result.output, (args, result.output)
    with app.app_context():
        assert budgets.limits(get_session(), app.extensions["services"].settings)["day"] == {
            budgets.ALL: 0.0
        }
    assert "no GPU budget is set" in runner.invoke(args=["admin", "budget"]).output


def test_the_resume_button_is_an_admins_with_its_token(app, client):
    with app.app_context():
        settings = app.extensions["services"].settings
        breaker.trip(get_session(), settings, breaker.State("default"), "boom", "fix it")
    anonymous = client.post("/admin/resume/default", data={"csrf_token": csrf_token(client)})
    assert anonymous.status_code in (302, 303, 401, 403)
    with app.app_context():
        assert breaker.load(get_session(), "default").open
    login_admin(client)
    assert client.post("/admin/resume/default").status_code == 400  # no CSRF token
    token = csrf_token(client, "/admin/")
    assert client.post("/admin/resume/nowhere", data={"csrf_token": token}).status_code == 404
    with app.app_context():
        assert breaker.load(get_session(), "default").open, "nothing changed"
    assert client.post("/admin/resume/default", data={"csrf_token": token}).status_code == 303
    with app.app_context():
        assert not breaker.load(get_session(), "default").open


def bill(session, endpoint: str, usd: float, pipeline: str = "echo", when=None, to=IDLE) -> None:
    session.add(
        BilledSeconds(
            worker_id=f"w-{endpoint}-{usd}",
            charged_to=to,
            endpoint=endpoint,
            pipeline=pipeline,
            startup_s=1.0,
            run_s=2.0,
            idle_s=1.0,
            usd=usd,
            worker_started_at=when or utcnow(),
        )
    )
    session.commit()


def test_an_endpoints_budget_holds_its_jobs_only(app):
    with app.app_context():
        session = get_session()
        settings = app.extensions["services"].settings.replace(
            budget_usd_per_day_by_endpoint=("video=1",)
        )
        bill(session, "video", 1.5)
        bill(session, "light", 9.0)
        bill(session, "video", 50.0, when=utcnow() - timedelta(days=2))  # another day
        video = Job(pipeline="echo", endpoint="video")
        light = Job(pipeline="echo", endpoint="light")
        assert budgets.hold_reason(session, settings, video) == (
            "waiting: the daily GPU budget of $1.00 for endpoint video is spent "
            "(resets at 00:00 UTC)"
        )
        assert budgets.hold_reason(session, settings, light) is None
        budgets.set_override(session, "day", "video", 5.0)
        assert budgets.hold_reason(session, settings, video) is None


def test_an_endpoint_answering_not_found_trips_its_breaker(app):
    with app.app_context():
        session = get_session()
        settings = app.extensions["services"].settings
        snapshot = {"unreachable": True, "error": "endpoint unreachable: Not Found"}
        state = breaker.observe(session, settings, snapshot, "default")
        assert state is not None and state.open and "Not Found" in state.cause
        assert "RUNPOD_ENDPOINT_ID" in state.fix


def test_the_dashboard_draws_spend_per_day_per_pipeline_and_endpoint(app, client):
    with app.app_context():
        bill(get_session(), "default", 0.25, pipeline="upscale", to="a-job")
    login_admin(client)
    panel = client.get("/admin/panel").get_data(as_text=True)
    assert 'id="spend-by_pipeline"' in panel and 'id="spend-by_endpoint"' in panel
    assert f"{utcnow().strftime('%m-%d')}: 0.25 USD upscale" in panel
    assert "25% idle and 25% start-up" in panel


def test_an_endpoint_refusing_the_api_key_trips_its_breaker(app, tmp_path):
    from app.lifecycle.submission import submit
    from app.services import services_of
    from deploy.stack.local_endpoint import local_endpoint

    with local_endpoint(tmp_path / "endpoint", api_key="the-right-key-0123456789") as ep:
        services = services_of(app)
        wrong = services.replace(
            settings=services.settings.replace(
                runpod_endpoint_base_url=ep.base_url,
                runpod_endpoint_id=ep.endpoint_id,
                runpod_api_key="a-wrong-key-9876543210",
            )
        )
        with app.app_context():
            session = get_session()
            first, second = Job(pipeline="echo"), Job(pipeline="echo")
            session.add_all([first, second])
            session.commit()
            assert submit(session, first.id, wrong) == "refused"
            state = breaker.load(session, "default")
            assert state.open and "401" in state.cause and "RUNPOD_API_KEY" in state.fix
            # Nothing more is sent: the next job waits with the words.
            assert submit(session, second.id, wrong).startswith("held: paused: ")
            session.refresh(second)
            assert second.status == "PENDING" and not second.attempts


def test_a_named_endpoint_is_priced_from_its_spec(tmp_path):
    from app.endpoints import billing
    from deploy.runpod.prices import price_per_second

    (tmp_path / "video.toml").write_text(
        '[endpoint]\npipelines = ["video_enhance"]\ngpu_tiers = ["AMPERE_48", "ADA_48_PRO"]\n'
        "gpu_count = 2\n"
    )
    (tmp_path / "own.toml").write_text(
        '[endpoint]\npipelines = ["upscale"]\ngpu_tiers = ["BLACKWELL_96"]\n'
        "[pricing]\nflex_per_s = 0.002\n"
    )
    settings = Settings.from_env({"APP_ENV": "test", "ENDPOINT_SPECS_DIR": str(tmp_path)})
    # The dearest of its tiers, per GPU, times its GPUs: never below the bill.
    assert billing.price(settings, "video") == price_per_second(["ADA_48_PRO"], gpu_count=2)
    assert billing.price(settings, "own") == 0.002  # the spec's [pricing]
    assert billing.price(settings) == price_per_second(["AMPERE_24"])  # GPU_POOLS
    assert billing.price(settings.replace(gpu_price_per_second=0.01)) == 0.01
