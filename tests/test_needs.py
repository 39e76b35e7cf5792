"""The skip rules of tests/needs.py and tests/cluster.py: absent parts skip, except under
CI=true; a PostgreSQL that refuses the login is an error, never a skip."""
import subprocess
import sys

import psycopg
import pytest

from tests.cluster import free_port_pair, postgres_refusal, require_postgres
from tests.serverproc import ROOT, base_env

NEEDS_SOMETHING = '''
from tests.needs import missing

def test_needs_something():
    missing("the widget is not installed")
'''


def run_pytest(test_file, ci):
    env = base_env()
    env.pop("CI", None)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(test_file)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("ci, outcome", [(None, "1 skipped"), ("false", "1 skipped"), ("true", "1 failed")])
def test_a_missing_part_skips_except_under_ci(tmp_path, ci, outcome):
    test_file = tmp_path / "test_widget.py"
    test_file.write_text(NEEDS_SOMETHING)
    done = run_pytest(test_file, ci)
    assert outcome in done.stdout, done.stdout + done.stderr
    assert "the widget is not installed" in done.stdout
    assert done.returncode == (1 if ci == "true" else 0)


def test_nothing_listening_is_a_refusal_and_a_refused_login_raises():
    nobody = free_port_pair()  # a port with nothing listening
    assert "Connection refused" in postgres_refusal(port=nobody)
    require_postgres()  # the rest needs a PostgreSQL that lets `postgres` in
    assert postgres_refusal() is None
    with pytest.raises(psycopg.OperationalError, match="no_such_role"):
        postgres_refusal(user="no_such_role")
