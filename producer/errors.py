"""The platform's errors, shared by workers and producers.

SpeechError                 root: catch this to catch everything the platform raises
 +-- BrokerUnavailable      RabbitMQ cannot be reached
 +-- AccessDenied           RabbitMQ refused the broker user a right (configure, write, read)
 +-- CallTimeout            no answer arrived within the caller's timeout
 +-- Overloaded             the algorithm's queue is full: back off and retry later
 |    +-- BrokerBlocked     RabbitMQ blocks publishers (memory or disk alarm): retry later
 +-- InvalidInput           the request is wrong; retrying it will not help
 |    +-- PayloadTooLarge   audio bigger than the configured maximum
 |    +-- InvalidAudio      audio that cannot be decoded, is empty or is too long
 |    +-- InvalidOptions    unknown options or arguments of the wrong type
 |    +-- ResultTooLarge    the answer would be bigger than the broker carries
 |    +-- UnknownJob        no job has that id (never made, or removed after retention)
 +-- TooManyRequests       one caller holds its share of the gateway: wait for its own requests
 +-- StorageFull           the job store holds its maximum bytes of audio: retry later
 +-- JobExpired            a job waited queued past its maximum (a job's error, never raised)
 +-- StoreUnavailable      the job store (SQLite file, PostgreSQL) cannot be used
 |    +-- StoreTooNew       the job store's schema is newer than this gateway's code
 +-- RemoteError           the algorithm failed on the worker for another reason
 +-- InvalidSetting        an environment variable has a value its setting cannot take

Workers raise InvalidAudio, InvalidOptions and ResultTooLarge; they travel back through the result
backend and are raised again, as the same class, in the caller. This module must stay
light: the worker and the producer both import it.
"""

import re


class SpeechError(Exception):
    """Root of every error the platform raises."""


class BrokerUnavailable(SpeechError):
    """Raised when RabbitMQ cannot be reached within the connection timeout."""


class AccessDenied(SpeechError):
    """Raised when RabbitMQ refuses the broker user a right on a queue, an exchange or a
    vhost (AMQP 403 ACCESS_REFUSED): the user's permissions, not the request, need fixing
    (`python -m producer permissions`)."""

    def __init__(self, message: str, *, user: str = "", right: str = "", resource: str = "",
                 vhost: str = "") -> None:  # fmt: skip
        super().__init__(message)
        self.user, self.right, self.resource, self.vhost = user, right, resource, vhost


# RabbitMQ's refusals: "access to exchange 'speech' in vhost 'v' refused for user 'u'" (3.10
# names no right; later versions put it first: "write access to ..."); a vhost's: "access to
# vhost 'v' refused for user 'u'".
_REFUSED = re.compile(
    r"(?:(?P<right>configure|write|read) )?access to (?P<resource>(?P<kind>queue|exchange) '.*?')"
    r" in vhost '(?P<vhost>.*?)' refused for user '(?P<user>.*?)'"
)
_VHOST_REFUSED = re.compile(r"access to vhost '(?P<vhost>.*?)' refused for user '(?P<user>.*?)'")
# The right each AMQP method needs of the resource it names (RabbitMQ's access control);
# a bind needs write on the queue and read on the exchange.
_RIGHTS = {
    "queue.declare": "configure", "exchange.declare": "configure",
    "queue.delete": "configure", "exchange.delete": "configure",
    "basic.publish": "write", "basic.get": "read", "basic.consume": "read", "queue.purge": "read",
    # a queue declared with a dead-letter exchange: write on that exchange (read on the
    # queue too, refused in the same words as configure: "configure" is named)
    "queue.declare:exchange": "write",
    "queue.bind:queue": "write", "queue.bind:exchange": "read",
    "queue.unbind:queue": "write", "queue.unbind:exchange": "read",
}  # fmt: skip
ACCESS_REFUSED = 403  # AMQP reply code
NOT_ALLOWED = 530  # AMQP reply code: a vhost the user has no permissions in


def access_denied(exc: BaseException | None) -> AccessDenied | None:
    """The AccessDenied behind `exc` (py-amqp, kombu or pika: anything carrying an AMQP
    reply code 403, or 530 for a vhost, in its chain), or None if it is something else."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, AccessDenied):
            return exc
        code = getattr(exc, "reply_code", None) or getattr(exc, "code", None)
        text = str(getattr(exc, "reply_text", "") or exc)
        method = str(getattr(exc, "method_name", "") or "").lower()
        if code == ACCESS_REFUSED or (code == NOT_ALLOWED and _VHOST_REFUSED.search(text)):
            return _from_text(text, method)
        if code is None and "ACCESS_REFUSED" in text:
            return _from_text(text, method)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _from_text(text: str, method: str = "") -> AccessDenied:
    if found := _REFUSED.search(text):
        user, kind = found["user"], found["kind"]
        right = found["right"] or _RIGHTS.get(f"{method}:{kind}") or _RIGHTS.get(method, "use")
        return AccessDenied(
            f"user {user!r} may not {right} {found['resource']} in vhost {found['vhost']!r}"
            " (its RabbitMQ permissions: `python -m producer permissions`)",
            user=user, right=right, resource=found["resource"], vhost=found["vhost"],
        )  # fmt: skip
    if found := _VHOST_REFUSED.search(text):
        return AccessDenied(
            f"user {found['user']!r} has no permissions in vhost {found['vhost']!r}"
            " (`python -m producer permissions`)",
            user=found["user"], vhost=found["vhost"],
        )  # fmt: skip
    if "Login was refused" in text:
        return AccessDenied(f"RabbitMQ refused the login: wrong user name or password ({text})")
    return AccessDenied(f"RabbitMQ refused: {text}")


class CallTimeout(SpeechError, TimeoutError):
    """Raised when no answer arrived within the caller's timeout."""


class Overloaded(SpeechError):
    """Raised when the algorithm's queue holds its maximum backlog and refused the call."""


class BrokerBlocked(Overloaded):
    """Raised when RabbitMQ blocks publishers under a resource alarm (memory or disk)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"RabbitMQ blocks publishers: {reason} (a resource alarm;"
            " calls resume by themselves once it clears)"
        )
        self.reason = reason


class InvalidInput(SpeechError, ValueError):
    """Raised when the request itself is wrong: fix it rather than retry it."""


class PayloadTooLarge(InvalidInput):
    """Raised when audio is larger than the configured maximum payload."""


class InvalidAudio(InvalidInput):
    """Raised when audio cannot be decoded, is empty, or is longer than allowed."""


class InvalidOptions(InvalidInput):
    """Raised when options are unknown or arguments have the wrong type."""


class ResultTooLarge(InvalidInput):
    """Raised when a result would exceed the largest message the broker takes."""


class UnknownJob(InvalidInput):
    """Raised when no job has the id asked for: never made, or removed after its retention."""


class TooManyRequests(SpeechError):
    """Raised when one caller (an API key, or a client address) holds its share of the
    gateway: connections, uploads in flight, or jobs queued and running."""


class StorageFull(SpeechError):
    """Raised when the job store already holds its maximum bytes of audio."""


class JobExpired(SpeechError):
    """Raised (as a job's error) when a job stayed queued longer than its maximum."""


class StoreUnavailable(SpeechError):
    """Raised when the job store (SQLite file or PostgreSQL) cannot be reached or used."""


class StoreTooNew(StoreUnavailable):
    """Raised when the job store's schema version is newer than the code opening it."""


class InvalidSetting(SpeechError, ValueError):
    """Raised when an environment variable has a value its setting cannot take."""


class RemoteError(SpeechError):
    """Raised when the algorithm failed on the worker; carries the remote error."""

    def __init__(self, remote_type: str, message: str) -> None:
        super().__init__(remote_type, message)
        self.remote_type = remote_type
        self.message = message

    def __str__(self) -> str:
        return f"{self.remote_type}: {self.message}"
