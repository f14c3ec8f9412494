"""The platform's errors, shared by workers and producers.

SpeechError                 root: catch this to catch everything the platform raises
 +-- BrokerUnavailable      RabbitMQ cannot be reached
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


class SpeechError(Exception):
    """Root of every error the platform raises."""


class BrokerUnavailable(SpeechError):
    """Raised when RabbitMQ cannot be reached within the connection timeout."""


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
