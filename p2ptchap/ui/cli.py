"""The ``p2ptchap`` command line.

The command names, options and ``--json`` outputs are a contract used by
scripts: keep them stable, add rather than change.  Every failure exits
non-zero with one translated sentence on stderr — 1 for a refused or failed
operation, 2 for wrong usage, 130 when interrupted — and never a traceback
(``--debug`` shows the technical detail for developers).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from p2ptchap import accounts
from p2ptchap.core import identity
from p2ptchap.core.addresses import display_email
from p2ptchap.core.errors import N_, P2PTchapError, UsageError, VerificationError
from p2ptchap.i18n import Translator
from p2ptchap.store.files import read_file
from p2ptchap.store.home import Home, default_home
from p2ptchap.ui import cli_chat, cli_files, cli_network, cli_rooms
from p2ptchap.ui.context import EXIT_FAILURE, Context, emit_json

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70

# Words shown through ctx.tr(value): kinds of account and certificate statuses.
STATUS_WORDS = (
    N_("agent"),
    N_("external"),
    N_("valid"),
    N_("pending-enrolment"),
    N_("bad-signature"),
    N_("unknown-authority"),
    N_("expired"),
    N_("not-yet-valid"),
    N_("revoked"),
    N_("external-claims-agent"),
    N_("foreign-domain"),
    N_("malformed"),
    N_("mismatch"),
)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one translated sentence and exit code 2."""

    translator: Translator | None = None

    def error(self, message: str) -> NoReturn:
        tr = self.translator or Translator()
        self.print_usage(sys.stderr)
        print(tr("p2ptchap: {message}").format(message=message), file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parse_time(text: str) -> int:
    """ISO 8601 date or date-time (UTC if no zone) to a timestamp."""
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp())


# --- authority ---------------------------------------------------------------


def cmd_authority_init(ctx: Context, args: argparse.Namespace) -> int:
    authority = accounts.create_authority(
        ctx.home, args.name, args.domain, ctx.passphrase(confirm=True), ctx.now, ctx.rng
    )
    ctx.say("Authority '{name}' created in {home}.", name=authority.name, home=ctx.home.root)
    ctx.say("Agent domains: {domains}", domains=", ".join(str(d) for d in authority.domains))
    ctx.say("Fingerprint: {fingerprint}", fingerprint=authority.fingerprint())
    return 0


def cmd_authority_export(ctx: Context, args: argparse.Namespace) -> int:
    authority = accounts.export_trust(ctx.home, args.out)
    ctx.say("Trust file of '{name}' written to {path}.", name=authority.name, path=args.out)
    ctx.say(
        "Give it to every node with its fingerprint, to be checked: {fingerprint}",
        fingerprint=authority.fingerprint(),
    )
    return 0


def _same_fingerprint(given: str, actual: str) -> bool:
    return given.replace(" ", "").upper() == actual.replace(" ", "").upper()


def _confirm(ctx: Context, question: str) -> bool:
    """Ask a yes/no question on the terminal; ``y`` or ``o`` (oui) accepts."""
    answer = input(ctx.tr(question) + " ").strip().lower()
    return answer[:1] in {"y", "o"}


def cmd_authority_issue(ctx: Context, args: argparse.Namespace) -> int:
    pending = accounts.read_request(args.request)
    fingerprint = pending.account_key.fingerprint()
    ctx.say(
        "Request from {name} <{email}>, account fingerprint {fingerprint}.",
        name=pending.display_name,
        email=display_email(pending.email),
        fingerprint=fingerprint,
    )
    # The fingerprint check is what defeats a request swapped on its way to
    # the administrator; it must happen before anything is signed.
    if args.fingerprint is not None:
        if not _same_fingerprint(args.fingerprint, fingerprint):
            raise UsageError(
                "fingerprint mismatch",
                user_message=(
                    "The request's account fingerprint is not the one given: do not issue, "
                    "the request may have been swapped."
                ),
            )
    elif sys.stdin.isatty() and not _confirm(
        ctx, N_("Is it the fingerprint shown on the agent's screen? [y/N]")
    ):
        ctx.say("Nothing issued.")
        return EXIT_FAILURE
    certificate = accounts.issue(
        ctx.home,
        pending,
        args.out,
        external=args.external,
        days=args.days,
        passphrase=ctx.passphrase(),
        now=ctx.now,
        rng=ctx.rng,
    )
    ctx.say(
        "Certificate issued for {name} <{email}> ({kind}), valid until {until}.",
        name=certificate.display_name,
        email=display_email(certificate.email),
        kind=ctx.tr(certificate.kind.value),
        until=accounts.iso(certificate.expires),
    )
    ctx.say("Serial: {serial}", serial=certificate.serial.hex())
    ctx.say("Written to {path}.", path=args.out)
    return 0


def cmd_authority_revoke(ctx: Context, args: argparse.Namespace) -> int:
    records = accounts.revoke_account(
        ctx.home, args.target, args.out, ctx.passphrase(), ctx.now, args.reason
    )
    target = records[0].email or records[0].serial.hex()
    ctx.say(
        "Revocation of {target} ({count} record(s)) written to {path}.",
        target=target,
        count=len(records),
        path=args.out,
    )
    ctx.say("Import it on the nodes with 'p2ptchap revocations import'.")
    return 0


# --- account -----------------------------------------------------------------


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    if args.trust_fingerprint:
        # Pinned fingerprints are checked before any key is created.
        for path in args.trust:
            authority = accounts.read_trust(path)
            if not any(
                _same_fingerprint(f, authority.fingerprint()) for f in args.trust_fingerprint
            ):
                raise UsageError(
                    "trust fingerprint mismatch",
                    user_message=(
                        "The trust file {path} ('{name}') does not have any of the expected "
                        "fingerprints; do not use it."
                    ),
                    path=path,
                    name=authority.name,
                )
    request, authorities = accounts.init_account(
        ctx.home,
        args.email,
        args.name,
        args.trust,
        args.request_out,
        device_name=args.device_name,
        passphrase=ctx.passphrase(confirm=True),
        now=ctx.now,
        rng=ctx.rng,
    )
    ctx.say(
        "Account created for {name} <{email}>.",
        name=request.display_name,
        email=display_email(request.email),
    )
    ctx.say("Enrolment request written to {path}.", path=args.request_out)
    ctx.say("Account fingerprint: {fingerprint}", fingerprint=request.account_key.fingerprint())
    for authority in authorities:
        ctx.say(
            "Trusted authority '{name}' ({domains}): {fingerprint}",
            name=authority.name,
            domains=", ".join(str(d) for d in authority.domains),
            fingerprint=authority.fingerprint(),
        )
    if not args.trust_fingerprint:
        ctx.say("Check each authority fingerprint against the one your administrator announced.")
    if not any(a.covers(request.email) for a in authorities):
        ctx.say("No trusted authority covers this address: you will be enrolled as an external.")
    ctx.say("Give the request to your authority's administrator, then run 'p2ptchap enroll CERT'.")
    return 0


def cmd_enroll(ctx: Context, args: argparse.Namespace) -> int:
    if (args.certificate is None) == (args.source is None):
        raise UsageError(
            "enroll needs CERT or --from",
            user_message="Give either the certificate file or --from HOST:PORT, not both.",
        )
    if args.source is not None:
        return cli_network.enroll_from(ctx, args.source)
    certificate = accounts.enroll(ctx.home, args.certificate, ctx.now)
    ctx.say(
        "Enrolled: {name} <{email}>, {kind}, certified by '{authority}' until {until}.",
        name=certificate.display_name,
        email=display_email(certificate.email),
        kind=ctx.tr(certificate.kind.value),
        authority=certificate.issuer.name,
        until=accounts.iso(certificate.expires),
    )
    return 0


def cmd_whoami(ctx: Context, args: argparse.Namespace) -> int:
    info = accounts.whoami(ctx.home, ctx.now)
    if args.json:
        emit_json(ctx, info)
        return 0
    if info["status"] == "pending-enrolment":
        ctx.say(
            "{name} <{email}> — waiting for enrolment.",
            name=info["name"],
            email=display_email(info["email"]),
        )
        ctx.say("Account fingerprint: {fingerprint}", fingerprint=info["account_fingerprint"])
        return 0
    ctx.say("{name} <{email}>", name=info["name"], email=info["display_email"])
    ctx.say("Kind: {kind}", kind=ctx.tr(info["kind"]))
    ctx.say("Authority: {name} ({fingerprint})", **info["authority"])
    ctx.say("Status: {status}", status=ctx.tr(info["status"]))
    ctx.say("Valid from {start} to {end}", start=info["valid_from"], end=info["valid_until"])
    ctx.say("Serial: {serial}", serial=info["serial"])
    ctx.say("Account fingerprint: {fingerprint}", fingerprint=info["account_fingerprint"])
    _print_devices(ctx, info["devices"])
    return 0


def _print_devices(ctx: Context, devices: list[dict[str, Any]]) -> None:
    ctx.say("Devices:")
    for device in devices:
        marks = []
        if device["current"]:
            marks.append(ctx.tr("this device"))
        if device["revoked"]:
            marks.append(ctx.tr("revoked"))
        suffix = f" [{', '.join(marks)}]" if marks else ""
        ctx.say(
            "  {id}  {name}  {created}{suffix}",
            id=device["id"],
            name=device["name"],
            created=device["created"],
            suffix=suffix,
        )


# --- devices -----------------------------------------------------------------


def cmd_device_add(ctx: Context, args: argparse.Namespace) -> int:
    device, path = accounts.add_device(
        ctx.home, args.name, args.out, ctx.passphrase(), ctx.now, ctx.rng
    )
    ctx.say("Device '{name}' added: {id}.", name=device.name, id=device.device_id)
    ctx.say(
        "Install it on the new computer with 'p2ptchap device import {path}' "
        "(the file is protected by your passphrase).",
        path=path,
    )
    return 0


def cmd_device_import(ctx: Context, args: argparse.Namespace) -> int:
    device = accounts.import_device(ctx.home, args.bundle, ctx.passphrase(), ctx.now, ctx.rng)
    ctx.say(
        "This computer is now the device '{name}' ({id}).", name=device.name, id=device.device_id
    )
    return 0


def cmd_device_list(ctx: Context, args: argparse.Namespace) -> int:
    devices = accounts.list_devices(ctx.home, ctx.now)
    if args.json:
        emit_json(ctx, devices)
    else:
        _print_devices(ctx, devices)
    return 0


def cmd_device_revoke(ctx: Context, args: argparse.Namespace) -> int:
    device = accounts.revoke_device(
        ctx.home, args.device_id, ctx.passphrase(), ctx.now, args.reason
    )
    ctx.say("Device '{name}' ({id}) revoked.", name=device.name, id=device.device_id)
    return 0


# --- revocations, verification -----------------------------------------------


def cmd_revocations_import(ctx: Context, args: argparse.Namespace) -> int:
    added, refused = accounts.import_revocations(ctx.home, args.file)
    ctx.say("{count} new revocation(s) imported.", count=added)
    for error in refused:
        ctx.say("Refused: {message}", message=error.render(ctx.tr))
    return EXIT_FAILURE if refused else 0


def cmd_revocations_export(ctx: Context, args: argparse.Namespace) -> int:
    count = accounts.export_revocations(ctx.home, args.out)
    ctx.say("{count} revocation(s) written to {path}.", count=count, path=args.out)
    return 0


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    at = args.at if args.at is not None else ctx.now
    try:
        account, device = accounts.verify_files(ctx.home, args.certificate, args.device, at)
    except VerificationError as exc:
        if args.json:
            emit_json(ctx, {"valid": False, "reason": exc.reason.value})
        else:
            ctx.say(
                "Invalid ({reason}): {message}", reason=exc.reason.value, message=exc.render(ctx.tr)
            )
        return EXIT_FAILURE
    result = {
        "valid": True,
        "email": account.email,
        "name": account.display_name,
        "kind": account.kind.value,
        "authority": account.issuer.name,
        "valid_until": accounts.iso(account.expires),
        "device": device.device_id if device else None,
    }
    if args.json:
        emit_json(ctx, result)
    else:
        ctx.say(
            "Valid: {name} <{email}>, {kind}, certified by '{authority}' until {until}.",
            name=account.display_name,
            email=display_email(account.email),
            kind=ctx.tr(account.kind.value),
            authority=account.issuer.name,
            until=result["valid_until"],
        )
    return 0


def cmd_safety_number(ctx: Context, args: argparse.Namespace) -> int:
    mine, trust, revocations = accounts.load_account(ctx.home, ctx.now)
    theirs = identity.verify_account_certificate(
        read_file(args.certificate), trust, revocations, ctx.now
    )
    ctx.say(
        "Safety number with {name} <{email}>:",
        name=theirs.display_name,
        email=display_email(theirs.email),
    )
    ctx.say("{number}", number=identity.safety_number(mine, theirs))
    ctx.say("Compare it aloud with your colleague: it must be identical on both screens.")
    return 0


def cmd_demo(ctx: Context, args: argparse.Namespace) -> int:
    from p2ptchap.ui import demo  # noqa: PLC0415 - only this command needs it

    return demo.run(ctx.tr, ctx.out, keep=args.keep)


# --- parser --------------------------------------------------------------------


def build_parser(tr: Translator) -> argparse.ArgumentParser:  # noqa: PLR0915 - one flat table
    """The argument parser, with help texts in the user's language."""
    _Parser.translator = tr
    parser = _Parser(
        prog="p2ptchap",
        description=tr("Serverless end-to-end encrypted messenger for public-service agents."),
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help=tr("node folder (default: $P2PTCHAP_HOME, else the XDG data folder)"),
    )
    parser.add_argument(
        "--lang",
        choices=["fr", "en"],
        default=None,
        help=tr("language of messages (default: from the locale, else French)"),
    )
    parser.add_argument("--debug", action="store_true", help=tr("show technical details of errors"))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(group: Any, name: str, handler: Callable[..., int], help_text: str) -> Any:
        sub = group.add_parser(name, help=tr(help_text), description=tr(help_text))
        sub.set_defaults(handler=handler)
        return sub

    authority = command(commands, "authority", _group_help, "manage an organisation authority")
    auth_commands = authority.add_subparsers(dest="subcommand", metavar="ACTION", required=True)
    sub = command(auth_commands, "init", cmd_authority_init, "create an authority in --home")
    sub.add_argument("--name", required=True, help=tr("the organisation's name"))
    sub.add_argument(
        "--domain",
        action="append",
        required=True,
        help=tr("an agent e-mail domain, e.g. interieur.gouv.fr or *.gouv.fr (repeat for several)"),
    )
    sub = command(auth_commands, "export", cmd_authority_export, "write the public trust file")
    sub.add_argument("--out", type=Path, required=True, help=tr("file to write"))
    sub = command(
        auth_commands,
        "issue",
        cmd_authority_issue,
        "issue an account certificate for an enrolment request",
    )
    sub.add_argument("request", type=Path, help=tr("the enrolment request file"))
    sub.add_argument("--out", type=Path, required=True, help=tr("certificate file to write"))
    sub.add_argument(
        "--external", action="store_true", help=tr("certify the person as an external")
    )
    sub.add_argument("--days", type=int, default=365, help=tr("validity in days (default 365)"))
    sub.add_argument(
        "--fingerprint",
        default=None,
        help=tr("the account fingerprint read on the agent's screen; refuse if it differs"),
    )
    sub = command(
        auth_commands,
        "revoke",
        cmd_authority_revoke,
        "revoke an account by e-mail address or certificate serial",
    )
    sub.add_argument("target", metavar="EMAIL|SERIAL", help=tr("address or serial to revoke"))
    sub.add_argument("--out", type=Path, required=True, help=tr("revocation file to write"))
    sub.add_argument("--reason", default="", help=tr("reason, recorded in the revocation"))
    sub = command(
        auth_commands,
        "serve",
        cli_network.cmd_authority_serve,
        "answer enrolment requests over the network, each approved by you",
    )
    cli_network.add_pairing_arguments(sub, tr)
    sub.add_argument("--days", type=int, default=365, help=tr("validity in days (default 365)"))

    sub = command(commands, "init", cmd_init, "create this node's account and an enrolment request")
    sub.add_argument("--email", required=True, help=tr("your professional e-mail address"))
    sub.add_argument("--name", required=True, help=tr('your name, e.g. "Prénom Nom"'))
    sub.add_argument(
        "--trust",
        type=Path,
        action="append",
        required=True,
        help=tr("an authority trust file (repeat for several)"),
    )
    sub.add_argument(
        "--request-out", type=Path, required=True, help=tr("enrolment request file to write")
    )
    sub.add_argument(
        "--trust-fingerprint",
        action="append",
        default=[],
        help=tr("expected fingerprint of the trust files (repeat for several)"),
    )
    sub.add_argument(
        "--device-name",
        default=os.uname().nodename or "device",
        help=tr("name of this device (default: the computer's name)"),
    )

    sub = command(commands, "enroll", cmd_enroll, "import the certificate issued for this account")
    sub.add_argument("certificate", type=Path, nargs="?", help=tr("the certificate file"))
    sub.add_argument(
        "--from",
        dest="source",
        metavar="HOST:PORT",
        default=None,
        help=tr("get it over the network from 'p2ptchap authority serve'"),
    )

    sub = command(commands, "whoami", cmd_whoami, "show this node's identity")
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    device = command(commands, "device", _group_help, "manage the devices of this account")
    dev_commands = device.add_subparsers(dest="subcommand", metavar="ACTION", required=True)
    sub = command(dev_commands, "add", cmd_device_add, "certify a new device of this account")
    sub.add_argument("--name", required=True, help=tr("name of the new device"))
    sub.add_argument(
        "--out",
        type=Path,
        default=None,
        help=tr("installation file to write (default: in --home/exports)"),
    )
    sub = command(
        dev_commands,
        "import",
        cmd_device_import,
        "make this computer a device added on the first device",
    )
    sub.add_argument("bundle", type=Path, help=tr("the file written by 'device add'"))
    sub = command(dev_commands, "list", cmd_device_list, "list the devices of this account")
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))
    sub = command(
        dev_commands, "serve", cli_network.cmd_device_serve, "link new devices over the network"
    )
    cli_network.add_pairing_arguments(sub, tr)
    sub = command(
        dev_commands,
        "link",
        cli_network.cmd_device_link,
        "make this computer a device of an account",
    )
    sub.add_argument(
        "--from",
        dest="source",
        metavar="HOST:PORT",
        required=True,
        help=tr("the first device, running 'p2ptchap device serve'"),
    )
    sub.add_argument("--name", required=True, help=tr("name of this device"))
    sub = command(dev_commands, "revoke", cmd_device_revoke, "revoke a lost or retired device")
    sub.add_argument("device_id", metavar="ID", help=tr("device id (or its first characters)"))
    sub.add_argument("--reason", default="", help=tr("reason, recorded in the revocation"))

    revocations = command(commands, "revocations", _group_help, "import or export revocations")
    rev_commands = revocations.add_subparsers(dest="subcommand", metavar="ACTION", required=True)
    sub = command(rev_commands, "import", cmd_revocations_import, "import revocation records")
    sub.add_argument("file", type=Path, help=tr("a revocation file"))
    sub = command(rev_commands, "export", cmd_revocations_export, "export all known revocations")
    sub.add_argument("--out", type=Path, required=True, help=tr("file to write"))

    sub = command(commands, "verify", cmd_verify, "verify an account certificate")
    sub.add_argument("certificate", type=Path, help=tr("the certificate file"))
    sub.add_argument(
        "--device", type=Path, default=None, help=tr("also verify this device certificate")
    )
    sub.add_argument(
        "--at",
        type=_parse_time,
        default=None,
        help=tr("verify at this date (ISO 8601) instead of now"),
    )
    sub.add_argument("--json", action="store_true", help=tr("machine-readable output"))

    sub = command(
        commands,
        "safety-number",
        cmd_safety_number,
        "show the safety number shared with another account",
    )
    sub.add_argument("certificate", type=Path, help=tr("the other account's certificate"))

    sub = command(
        commands,
        "demo",
        cmd_demo,
        "run the crisis-cell demo on this machine, in a temporary folder",
    )
    sub.add_argument("--keep", action="store_true", help=tr("keep the temporary folder"))
    cli_network.add_commands(commands, command, tr)
    cli_rooms.add_commands(commands, command, tr)
    cli_files.add_commands(commands, command, tr)
    cli_chat.add_commands(commands, command, tr)
    return parser


def _group_help(ctx: Context, args: argparse.Namespace) -> int:  # pragma: no cover
    raise UsageError("missing action")


def _early_language(argv: Sequence[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg.startswith("--lang="):
            return arg.split("=", 1)[1]
        if arg == "--lang" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    language = _early_language(argv)
    tr = Translator(language if language in {"fr", "en"} else None)
    parser = build_parser(tr)
    args = parser.parse_args(argv)
    ctx = Context(
        home=Home(args.home or default_home()),
        tr=tr,
        out=out or sys.stdout,
        now=int(time.time()),
        rng=os.urandom,
    )
    try:
        return int(args.handler(ctx, args))
    except P2PTchapError as exc:
        if args.debug:
            traceback.print_exc()
        print(tr("p2ptchap: {message}").format(message=exc.render(tr)), file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILURE
    except KeyboardInterrupt:
        print(tr("p2ptchap: interrupted."), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug: still one sentence, details on request
        if args.debug:
            traceback.print_exc()
        print(
            tr("p2ptchap: internal error ({kind}); run again with --debug and report it.").format(
                kind=type(exc).__name__
            ),
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
