"""The broker's settings: defaults < ``--config`` file < ``JOBBROKER_*`` environment < flags;
every bad value refused before anything starts, with a message naming the setting and where
it came from; ``jobbroker serve --help`` documents every setting."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from jobbroker_broker import config
from jobbroker_broker.config import ConfigError, load
from jobbroker_broker.settings import Settings

CLI_TIMEOUT = 60.0


def write_toml(tmp_path: Path, text: str, name: str = "broker.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def refused(argv: list[str], environ: dict[str, str] | None = None) -> str:
    """The message of the ConfigError ``load`` raises for these flags and environment."""
    with pytest.raises(ConfigError) as caught:
        load(argv, environ or {})
    return str(caught.value)


def a_file(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_text("placeholder\n")
    return str(path)


# --- precedence ---------------------------------------------------------------------------


def test_no_sources_give_the_defaults() -> None:
    settings, _ = load([], {})
    assert settings == Settings()


def test_file_then_env_then_flag(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        'port = 1111\nredis_timeout = 2.5\nmax_stalled = 3\nredis_url = "redis://file:1/0"\n',
    )
    environ = {
        "JOBBROKER_PORT": "2222",
        "JOBBROKER_REDIS_TIMEOUT": "3.5",
    }
    settings, _ = load(["--config", path, "--port", "3333"], environ)
    assert settings.port == 3333  # flag over env over file
    assert settings.redis_timeout == 3.5  # env over file
    assert settings.max_stalled == 3  # file alone
    assert settings.redis_url == "redis://file:1/0"  # file alone
    assert settings.max_bulk_jobs == Settings().max_bulk_jobs  # default


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        pytest.param([], {}, 1111, id="file"),
        pytest.param([], {"JOBBROKER_PORT": "2222"}, 2222, id="env-over-file"),
        pytest.param(["--port", "3333"], {}, 3333, id="flag-over-file"),
        pytest.param(["--port", "3333"], {"JOBBROKER_PORT": "2222"}, 3333, id="flag-over-env"),
    ],
)
def test_each_source_overrides_the_one_before(
    tmp_path: Path, argv: list[str], environ: dict[str, str], expected: int
) -> None:
    path = write_toml(tmp_path, "port = 1111\n")
    settings, _ = load(["--config", path, *argv], environ)
    assert settings.port == expected


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "max_bulk_jobs = 7\n")
    settings, _ = load([], {"JOBBROKER_CONFIG": path})
    assert settings.max_bulk_jobs == 7


def test_config_flag_wins_over_config_env(tmp_path: Path) -> None:
    from_env = write_toml(tmp_path, "max_bulk_jobs = 7\n", "env.toml")
    from_flag = write_toml(tmp_path, "max_bulk_jobs = 9\n", "flag.toml")
    settings, _ = load(["--config", from_flag], {"JOBBROKER_CONFIG": from_env})
    assert settings.max_bulk_jobs == 9


def test_file_keys_may_use_dashes(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "max-bulk-jobs = 5\n")
    settings, _ = load(["--config", path], {})
    assert settings.max_bulk_jobs == 5


def test_unrelated_environment_is_ignored() -> None:
    settings, _ = load([], {"JOBBROKER_ADDRESS": "elsewhere:1", "PORT": "1"})
    assert settings == Settings()


# --- in-process only ----------------------------------------------------------------------


def test_the_test_clock_is_no_environment_variable() -> None:
    settings, _ = load([], {"JOBBROKER_TEST_CLOCK": "true"})
    assert settings.test_clock is False


def test_the_test_clock_is_no_flag() -> None:
    result = run_cli("serve", "--test-clock")
    assert result.returncode != 0
    assert "unrecognized arguments: --test-clock" in result.stderr


def test_the_test_clock_is_no_config_file_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "test_clock = true\n")
    message = refused(["--config", path])
    assert "unknown setting 'test_clock'" in message


# --- booleans -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_boolean_from_env(raw: str, expected: bool) -> None:
    settings, _ = load([], {"JOBBROKER_ALLOW_EVICTING_REDIS": raw})
    assert settings.allow_evicting_redis is expected


def test_bad_boolean_in_env_names_the_variable() -> None:
    message = refused([], {"JOBBROKER_INSECURE": "maybe"})
    assert message.startswith("JOBBROKER_INSECURE:")
    assert "'maybe'" in message
    assert "boolean" in message


def test_boolean_flag_overrides_env() -> None:
    settings, _ = load(["--no-allow-evicting-redis"], {"JOBBROKER_ALLOW_EVICTING_REDIS": "true"})
    assert settings.allow_evicting_redis is False
    settings, _ = load(["--allow-evicting-redis"], {"JOBBROKER_ALLOW_EVICTING_REDIS": "0"})
    assert settings.allow_evicting_redis is True


def test_boolean_from_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "allow_evicting_redis = true\n")
    settings, _ = load(["--config", path], {})
    assert settings.allow_evicting_redis is True


def test_bad_boolean_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'insecure = "maybe"\n')
    message = refused(["--config", path])
    assert message.startswith(f"insecure in {path}:")


# --- bad values: each names the setting and its source ------------------------------------


def test_bad_int_in_env_names_the_variable() -> None:
    message = refused([], {"JOBBROKER_PORT": "abc"})
    assert message.startswith("JOBBROKER_PORT:")
    assert "'abc'" in message


def test_bad_float_in_flag_names_the_flag() -> None:
    message = refused(["--redis-timeout", "soon"])
    assert message.startswith("--redis-timeout:")
    assert "'soon'" in message


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = 1\nno_such_setting = 1\n")
    message = refused(["--config", path])
    assert path in message
    assert "no_such_setting" in message
    assert "unknown setting" in message


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('port = "high"', "port"),
        ("port = true", "port"),
        ("host = 5", "host"),
        ('redis_timeout = "soon"', "redis_timeout"),
    ],
)
def test_wrong_type_in_file_names_key_and_file(tmp_path: Path, line: str, key: str) -> None:
    path = write_toml(tmp_path, line + "\n")
    message = refused(["--config", path])
    assert message.startswith(f"{key} in {path}:")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = = 1\n")
    message = refused(["--config", path])
    assert message.startswith(f"--config {path}:")
    assert "TOML" in message


def test_missing_config_file_names_the_flag(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.toml")
    message = refused(["--config", path])
    assert message.startswith(f"--config {path}:")
    message = refused([], {"JOBBROKER_CONFIG": path})
    assert path in message


@pytest.mark.parametrize("port", ["65536", "70000", "-1"])
def test_out_of_range_port_names_the_flag(port: str) -> None:
    message = refused(["--port", port])
    assert message.startswith("--port:")
    assert port in message


def test_port_zero_and_max_are_accepted() -> None:
    assert load(["--port", "0"], {})[0].port == 0
    assert load(["--port", "65535"], {})[0].port == 65535


def test_out_of_range_embedded_redis_port_names_the_flag() -> None:
    message = refused([], {"JOBBROKER_EMBEDDED_REDIS_PORT": "99999"})
    assert message.startswith("--embedded-redis-port:")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--redis-timeout", "0"], "--redis-timeout"),
        (["--redis-max-connections", "-5"], "--redis-max-connections"),
        (["--max-payload-bytes", "0"], "--max-payload-bytes"),
        (["--max-stalled", "-1"], "--max-stalled"),
        (["--shutdown-grace", "-0.5"], "--shutdown-grace"),
        (["--rate-limit", "-1"], "--rate-limit"),
    ],
)
def test_out_of_range_numbers_name_the_flag(argv: list[str], flag: str) -> None:
    assert refused(argv).startswith(f"{flag}:")


def test_redis_urls_redis_py_accepts_pass(tmp_path: Path) -> None:
    url = f"rediss://127.0.0.1:6380/0?ssl_ca_certs={tmp_path}/ca.pem&ssl_cert_reqs=required"
    assert load(["--redis-url", url], {})[0].redis_url == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0?socket_timeout=soon"]
)
def test_bad_redis_url_names_the_flag(url: str) -> None:
    assert refused(["--redis-url", url]).startswith("--redis-url")


def test_tls_cert_without_key_is_refused(tmp_path: Path) -> None:
    cert = a_file(tmp_path, "cert.pem")
    message = refused(["--tls-cert-file", cert])
    assert "--tls-cert-file" in message
    assert "--tls-key-file" in message
    message = refused(["--tls-key-file", cert])
    assert "--tls-cert-file" in message


def test_client_ca_without_server_cert_is_refused(tmp_path: Path) -> None:
    message = refused(["--tls-client-ca-file", a_file(tmp_path, "ca.pem")])
    assert message.startswith("--tls-client-ca-file:")


@pytest.mark.parametrize(
    "name", ["tls_cert_file", "tls_key_file", "tls_client_ca_file", "auth_tokens_file"]
)
def test_missing_file_names_the_flag(tmp_path: Path, name: str) -> None:
    files = {
        "tls_cert_file": a_file(tmp_path, "cert.pem"),
        "tls_key_file": a_file(tmp_path, "key.pem"),
        "tls_client_ca_file": a_file(tmp_path, "ca.pem"),
        "auth_tokens_file": a_file(tmp_path, "tokens.toml"),
    }
    missing = str(tmp_path / "nowhere" / f"{name}.pem")
    files[name] = missing
    argv = [item for key, path in files.items() for item in (config.flag(key), path)]
    message = refused(argv)
    assert message.startswith(f"{config.flag(name)}:")
    assert missing in message


def test_all_tls_files_present_are_accepted(tmp_path: Path) -> None:
    settings, _ = load(
        [
            "--tls-cert-file",
            a_file(tmp_path, "cert.pem"),
            "--tls-key-file",
            a_file(tmp_path, "key.pem"),
            "--tls-client-ca-file",
            a_file(tmp_path, "ca.pem"),
        ],
        {},
    )
    assert settings.tls_client_ca_file.endswith("ca.pem")


# --- binding beyond loopback ------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "broker.example"])
def test_non_loopback_host_without_auth_needs_insecure(host: str) -> None:
    message = refused(["--host", host])
    assert message.startswith(f"--host {host}:")
    assert "--insecure" in message
    assert "--auth-tokens-file" in message


def test_non_loopback_host_from_env_is_refused_too() -> None:
    assert "--insecure" in refused([], {"JOBBROKER_HOST": "0.0.0.0"})


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        pytest.param(["--host", "0.0.0.0", "--insecure"], {}, id="flag"),
        pytest.param(["--host", "0.0.0.0"], {"JOBBROKER_INSECURE": "true"}, id="env"),
    ],
)
def test_non_loopback_host_accepted_with_insecure(argv: list[str], environ: dict[str, str]) -> None:
    settings, _ = load(argv, environ)
    assert settings.host == "0.0.0.0"
    assert settings.insecure is True


def test_non_loopback_host_accepted_with_a_token_file(tmp_path: Path) -> None:
    tokens = a_file(tmp_path, "tokens.toml")
    settings, _ = load(["--host", "0.0.0.0", "--auth-tokens-file", tokens], {})
    assert settings.auth_tokens_file == tokens


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts_need_nothing(host: str) -> None:
    assert load(["--host", host], {})[0].host == host


# --- the command line itself --------------------------------------------------------------


def test_malformed_command_line_exits_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        load(["--no-such-flag"], {})
    assert caught.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_every_setting_has_a_docstring() -> None:
    docs = config.field_docs()
    for field in dataclasses.fields(Settings):
        assert docs.get(field.name, "").strip(), f"{field.name} has no docstring"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``jobbroker <args>`` in a child, without JOBBROKER_* variables of this environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBBROKER_")}
    base["COLUMNS"] = "100"
    return subprocess.run(
        [sys.executable, "-m", "jobbroker.cli", *args],
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def help_entries(text: str) -> dict[str, str]:
    """Each option of an argparse help text, by flag (``--x`` and ``--no-x`` alike), with its
    help text, wrapped lines joined."""
    blocks: list[tuple[list[str], list[str]]] = []
    for line in text.splitlines():
        option = re.match(r"^  (-\S.*?)(?:\s{2,}(\S.*))?$", line)
        if option:
            names = [invocation.split()[0] for invocation in option.group(1).split(", ")]
            blocks.append((names, [option.group(2) or ""]))
        elif blocks and line.startswith("   ") and line.strip():
            blocks[-1][1].append(line.strip())
    return {
        name: " ".join(part for part in parts if part) for names, parts in blocks for name in names
    }


def test_serve_help_lists_every_setting_with_its_help() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0, result.stderr
    entries = help_entries(result.stdout)
    assert "--config" in entries
    for field in config.configurable():
        flag = config.flag(field.name)
        assert flag in entries, f"{flag} missing from jobbroker serve --help"
        help_text = entries[flag]
        env = config.ENV_PREFIX + field.name.upper()
        assert env in help_text, f"{flag}: help does not name {env}: {help_text!r}"
        description = help_text.split("(env ")[0].strip()
        assert description, f"{flag}: empty help text"
        if isinstance(getattr(Settings(), field.name), bool):
            assert "--no-" + flag[2:] in entries


def test_serve_with_a_bad_flag_exits_2_naming_it() -> None:
    result = run_cli("serve", "--port", "70000")
    assert result.returncode == 2
    assert "jobbroker: --port: 70000 is not a port" in result.stderr
    assert "listening" not in result.stdout


def test_serve_with_a_bad_env_value_exits_2_naming_it() -> None:
    result = run_cli("serve", env={"JOBBROKER_PORT": "abc"})
    assert result.returncode == 2
    assert "jobbroker: JOBBROKER_PORT:" in result.stderr
    assert "'abc'" in result.stderr


def test_serve_on_all_interfaces_without_auth_exits_2_mentioning_insecure() -> None:
    result = run_cli("serve", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "jobbroker: --host 0.0.0.0:" in result.stderr
    assert "--insecure" in result.stderr


def test_serve_with_an_unknown_flag_exits_2() -> None:
    result = run_cli("serve", "--no-such-flag")
    assert result.returncode == 2
    assert "--no-such-flag" in result.stderr
