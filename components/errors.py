"""Typed errors shared by every component; the entrypoint maps them to exit codes."""


class PortsideError(Exception):
    """Base class: a failure with a message meant for the person running the job."""

    exit_code = 1


class InputDataError(PortsideError):
    """Input data is unusable; the message names the file, column or field."""


class ConfigurationError(PortsideError):
    """A parameter, definition or setting is wrong or missing."""


class GateFailed(PortsideError):
    """A quality gate (validation, blessing) said no. Not a crash: downstream must not run."""

    exit_code = 3
