"""``citytelemetry security ...``: credentials, ACLs and certificates for a local or small deployment.

    security init              create the secret (once), write the broker's password and ACL files
    security acl [--reload]    rewrite them from the inventory (after an inventory change), reload the broker
    security rotate --device ID | --service USER | --influx USER   a new password for one account
    security credential --device ID | --pipeline | --operator | --gateway | --influx USER   print one credential
    security certs [--host NAME] [--client NAME] [--renew]   local CA and certificates
    security influx-users      admin, write-only pipeline and read-only dashboard users in InfluxDB 1.x

Nothing here prints a secret except ``security credential``, which exists to do exactly that.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TextIO

from citytelemetry.config import Settings
from citytelemetry.profiles import ProfileError, load_catalog
from citytelemetry.security.credentials import SecretKey
from citytelemetry.security.errors import SecurityError
from citytelemetry.security.influx import ADMIN, READER, WRITER, Account, InfluxUsers, setup_least_privilege
from citytelemetry.security.local import BrokerFiles, local_credentials, prepare_broker, security_dir
from citytelemetry.security.tls import LocalPki, fingerprint

ACTIONS = ("init", "acl", "rotate", "credential", "certs", "influx-users")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("security", help="device credentials, broker ACLs, TLS certificates, InfluxDB users")
    parser.add_argument("security_action", choices=ACTIONS, metavar="{" + ",".join(ACTIONS) + "}")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--device", help="a device id of the inventory (rotate, credential)")
    who.add_argument("--service", help="a broker service account, e.g. citytelemetry-1 (a pipeline member) "
                                       "or ct-operator (rotate)")
    who.add_argument("--pipeline", action="store_true", help="the pipeline's broker account (credential)")
    who.add_argument("--operator", action="store_true", help="the operator's broker account (credential)")
    who.add_argument("--gateway", action="store_true", help="the site gateway account the simulator uses (credential)")
    who.add_argument("--influx", metavar="USER", help=f"an InfluxDB user: {ADMIN}, {WRITER}, {READER}")
    parser.add_argument("--reload", action="store_true", help="acl/rotate: make the running local broker reread them")
    parser.add_argument("--rotate-secret", action="store_true", help="init: new secret = every credential changes")
    parser.add_argument("--host", action="append", default=[], help="certs: extra server name (repeatable)")
    parser.add_argument("--client", action="append", default=[], help="certs: client certificate name (repeatable)")
    parser.add_argument("--renew", action="store_true", help="certs: issue new certificates even if valid")


def handle(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None,
           err: TextIO | None = None) -> int:
    """Run ``security ...``. Errors: message on stderr, exit 1."""
    try:
        return _dispatch(args, settings, out or sys.stdout)
    except (SecurityError, ProfileError, OSError) as exc:
        (err or sys.stderr).write(f"citytelemetry security: {exc}\n")
        return 1


def _dispatch(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    action = args.security_action
    if action == "init":
        return _init(args, settings, out)
    if action == "acl":
        return _acl(args, settings, out)
    if action == "rotate":
        return _rotate(args, settings, out)
    if action == "credential":
        return _credential(args, settings, out)
    if action == "certs":
        return _certs(args, settings, out)
    return _influx_users(settings, out)


def _write_broker_files(settings: Settings, out: TextIO) -> BrokerFiles:
    catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
    files = prepare_broker(settings, catalog)
    out.write(f"wrote {files.password_file} ({len(catalog.devices)} devices + pipeline members + operator + gateway) "
              f"and {files.acl_file}\n")
    return files


def _init(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    secret = security_dir(settings) / "secret"
    if args.rotate_secret or not secret.exists():
        SecretKey.create(secret, overwrite=args.rotate_secret)
        out.write(f"created {secret} (mode 0600): every credential derives from it; keep it out of git and backups "
                  "you do not trust\n")
    else:
        out.write(f"kept {secret}\n")
    _write_broker_files(settings, out)
    return 0


def _acl(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    local_credentials(settings, create=False)  # refuse to invent a new secret here
    _write_broker_files(settings, out)
    return _reload(settings, out) if args.reload else 0


def _reload(settings: Settings, out: TextIO) -> int:
    """SIGHUP our local mosquitto (found by pid file and command line): it rereads password and ACL files."""
    from citytelemetry.services import managed_services

    broker = managed_services(settings, prepare=False)[0]
    pid = broker.pid
    if pid is None:
        out.write("the local broker is not running; it reads the files when `services up` starts it\n")
        return 0
    os.kill(pid, signal.SIGHUP)
    out.write(f"broker pid {pid} reloads its password and ACL files (existing connections stay until they "
              "reconnect; restart the broker to cut them)\n")
    return 0


def _rotate(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    creds = local_credentials(settings, create=False)
    generations = creds.source.generations
    if args.device:
        realm, name = "mqtt-device", args.device
    elif args.service:
        realm, name = "mqtt-service", args.service
    elif args.influx:
        realm, name = "influx", args.influx
    else:
        raise SecurityError("rotate needs --device ID, --service USER or --influx USER")
    generation = generations.bump(realm, name)
    generations.save()
    out.write(f"{realm} {name}: now generation {generation}\n")
    if realm == "influx":
        out.write("run `citytelemetry security influx-users` to set the new password in InfluxDB\n")
        return 0
    _write_broker_files(settings, out)
    return _reload(settings, out) if args.reload else 0


def _credential(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    creds = local_credentials(settings, create=False)
    if args.device:
        catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
        if args.device not in catalog.devices:
            raise SecurityError(f"device {args.device[:64]!r} is not in the inventory")
        user, password = creds.device(args.device)
    elif args.pipeline:
        user, password = creds.pipeline_user, creds.pipeline_password
    elif args.operator:
        user, password = creds.operator
    elif args.gateway:
        user, password = creds.gateway
    elif args.influx:
        user, password = args.influx, creds.source.influx_password(args.influx)
    else:
        raise SecurityError("credential needs --device ID, --pipeline, --operator, --gateway or --influx USER")
    out.write(f"username={user}\npassword={password}\n")
    return 0


def _certs(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    pki = LocalPki(security_dir(settings) / "tls")
    ca = pki.ensure_ca()
    server = pki.ensure_server(tuple(args.host), renew=args.renew)
    out.write(f"CA      {ca.cert}  sha256 {fingerprint(ca.cert)}\nserver  {server.cert}  {server.key}\n")
    for name in args.client:
        pair = pki.issue(name, client=True, renew=args.renew)
        out.write(f"client  {pair.cert}  {pair.key}\n")
    out.write(f'clients: mqtt.ca_file = "{ca.cert}" (mqtts://), SSL_CERT_FILE={ca.cert} for other tools\n')
    return 0


def _influx_users(settings: Settings, out: TextIO) -> int:
    creds = local_credentials(settings, create=False)
    users = InfluxUsers(*(Account(name, creds.source.influx_password(name)) for name in (ADMIN, WRITER, READER)))
    pki = LocalPki(security_dir(settings) / "tls")
    ca_file = pki.ca.cert if pki.ca.cert.exists() else None
    setup_least_privilege(settings.influx.url, settings.influx.database, users, ca_file=ca_file)
    out.write(f"InfluxDB {settings.influx.url}: {ADMIN} (admin), {WRITER} (WRITE on {settings.influx.database}), "
              f"{READER} (READ on {settings.influx.database})\n"
              f"pipeline: CITYTELEMETRY_INFLUX__USERNAME={WRITER}, CITYTELEMETRY_INFLUX__PASSWORD from "
              f"`citytelemetry security credential --influx {WRITER}`, CITYTELEMETRY_INFLUX__CREATE_DATABASE=false\n")
    return 0
