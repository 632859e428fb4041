"""The one exception tree of p2ptchap.

Every error the package raises on purpose derives from :class:`P2PTchapError`
and is split by blame, as h11 does:

* :class:`LocalError` — the fault is on our side of the wire: the user typed a
  wrong passphrase, a file is missing, a command was used wrongly, the disk is
  full.
* :class:`RemoteError` — the fault is in data that came from elsewhere: a
  peer, a certificate file, a revocation record.  Such data is never trusted,
  and rejecting it never changes stored state.

Each error carries a ``user_message``: one sentence that tells the person at
the keyboard what happened and what to do.  It is an English ``str.format``
template whose values are kept apart in ``params``, so that the interface
can translate the template (see :mod:`p2ptchap.i18n`) before filling it in:
:meth:`P2PTchapError.render`.  Interfaces print it instead of a traceback.
"""

from __future__ import annotations

import enum
from collections.abc import Callable


def N_(message: str) -> str:
    """Mark ``message`` for translation where it is defined (gettext's ``N_``).

    It returns the message unchanged: translation happens where the message
    is shown, by the user interface.
    """
    return message


class P2PTchapError(Exception):
    """Root of every error p2ptchap raises on purpose."""

    #: The sentence shown to a user; subclasses set a default.
    default_message = "Something went wrong."

    def __init__(
        self, detail: str = "", *, user_message: str | None = None, **params: object
    ) -> None:
        super().__init__(detail or user_message or self.default_message)
        self.detail = detail
        self.user_message = user_message or self.default_message
        self.params = params

    def render(self, translate: Callable[[str], str] = str) -> str:
        """The user message, translated by ``translate`` and then filled in."""
        return translate(self.user_message).format(**self.params)


class LocalError(P2PTchapError):
    """The fault is on our side: configuration, usage, local files."""


class RemoteError(P2PTchapError):
    """The fault is in data that came from outside: a peer, a file, a record."""


# --- local -----------------------------------------------------------------


class UsageError(LocalError):
    """A command or function was called with arguments that cannot work."""

    default_message = "The command was used wrongly; see --help."


class WrongPassphrase(LocalError):
    """The passphrase does not open the sealed secret."""

    default_message = "Wrong passphrase: the key file could not be opened. Try again."


class StorageError(LocalError):
    """A local file or database could not be read or written."""

    default_message = "A local file could not be read or written."


class NotInitialised(LocalError):
    """The home folder does not hold what the command needs."""

    default_message = "This home folder has no account yet; run 'p2ptchap init' first."


# --- remote ----------------------------------------------------------------


class DecodeError(RemoteError):
    """Bytes are not a well-formed, canonical, in-limits encoding of a value."""

    default_message = "Received data is malformed and was rejected."


class VerificationFailure(enum.Enum):
    """Why a certificate, request or record was not accepted.

    The values are stable strings: they appear in logs and in JSON output.
    """

    BAD_SIGNATURE = "bad-signature"
    UNKNOWN_AUTHORITY = "unknown-authority"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    REVOKED = "revoked"
    EXTERNAL_CLAIMS_AGENT = "external-claims-agent"
    FOREIGN_DOMAIN = "foreign-domain"
    MALFORMED = "malformed"
    MISMATCH = "mismatch"


_VERIFICATION_MESSAGES = {
    VerificationFailure.BAD_SIGNATURE: N_(
        "The signature does not match: the file was altered or signed by another key."
    ),
    VerificationFailure.UNKNOWN_AUTHORITY: N_(
        "The certificate was issued by an authority this node does not trust; "
        "import that authority's trust file if it should be trusted."
    ),
    VerificationFailure.EXPIRED: N_(
        "The certificate has expired; ask the authority's administrator for a new one."
    ),
    VerificationFailure.NOT_YET_VALID: N_(
        "The certificate is not valid yet; check this computer's date and time."
    ),
    VerificationFailure.REVOKED: N_(
        "The certificate or device has been revoked and can no longer be used."
    ),
    VerificationFailure.EXTERNAL_CLAIMS_AGENT: N_(
        "The certificate claims agent status for an e-mail domain its authority does not cover."
    ),
    VerificationFailure.FOREIGN_DOMAIN: N_(
        "The certificate is for an address of a domain that belongs to another authority."
    ),
    VerificationFailure.MALFORMED: N_("The certificate or record is malformed."),
    VerificationFailure.MISMATCH: N_("The certificate does not belong to this account or request."),
}


class VerificationError(RemoteError):
    """A certificate chain, enrollment request or signed record was rejected.

    ``reason`` says precisely why; it is what logs and scripts look at.
    """

    def __init__(self, reason: VerificationFailure, detail: str = "") -> None:
        super().__init__(detail or reason.value, user_message=_VERIFICATION_MESSAGES[reason])
        self.reason = reason
