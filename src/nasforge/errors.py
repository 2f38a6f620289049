"""Exceptions with messages meant for users: the CLI prints them as one line and exits 2. Most are bad input;
:class:`ReplicaError` ends a data-parallel command whose replicas can no longer stay in step."""

from __future__ import annotations


class NasforgeError(Exception):
    """Base class for errors caused by bad input (files, strings, config, names)."""


class InvalidArchitecture(NasforgeError, ValueError):
    """An architecture string or value that does not belong to its search space."""


class ConfigError(NasforgeError):
    """A config file or a ``key=value`` override that cannot be applied."""


class DataError(NasforgeError):
    """A benchmark table or data set that is missing or malformed."""


class RunDirError(NasforgeError):
    """A run directory that cannot be created, resumed or read."""


class ReplicaError(NasforgeError):
    """An evaluation failed in a data-parallel replica (``--nproc``, torchrun): the replicas stop together
    instead of retrying or recording a failure, which would put them out of step."""
