"""A botocore session's configuration and environment credentials, without importing botocore.session.

``botocore.session`` brings botocore's client machinery and every credential provider: about 4 MiB
and 20 ms at every start (docs/daemon.md, start-up). The default daemon needs from a session its
configuration variables (region, endpoint, CA bundle, IMDS settings), the shared config files and
credentials, most often from the environment. :class:`AwsConfigSession` answers the first two with
botocore's own configuration store and file loader (the same variables, sources and order as
``botocore.session.Session``), SQS's endpoint rules with botocore's data loader, and credentials
from ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` itself, which botocore's chain takes first.
With no shared config or credentials file and no profile named, the variables it reads at start-up
come from the environment alone (:func:`env_config_variable`, botocore's variable names and
conversions): botocore's configuration store, and ``botocore.utils`` with urllib3 under it (about
4 MiB and 30 ms), are then not imported.
For anything else (another credential source, refreshable environment credentials, a client) it
makes a real botocore session, once, and defers to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

# botocore's EnvProvider: its variables, and its order for the token (the first one set wins).
_ACCESS_KEY = "AWS_ACCESS_KEY_ID"
_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 (a variable name)
_TOKENS = ("AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")
_EXPIRY_TIME = "AWS_CREDENTIAL_EXPIRATION"
_ACCOUNT_ID = "AWS_ACCOUNT_ID"

# botocore's configuration variables the daemon reads at start-up (create_botocore_default_config_mapping):
# logical name -> (environment variable, default). With no config file and no profile, botocore's
# store answers with the variable when it is set (even empty), else the default.
_ENV_CONFIG: dict[str, tuple[str, Any]] = {
    "region": ("AWS_DEFAULT_REGION", None),
    "data_path": ("AWS_DATA_PATH", None),
    "config_file": ("AWS_CONFIG_FILE", "~/.aws/config"),
    "credentials_file": ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
    "ca_bundle": ("AWS_CA_BUNDLE", None),
    "metadata_service_timeout": ("AWS_METADATA_SERVICE_TIMEOUT", 1),
    "metadata_service_num_attempts": ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", 1),
    "ec2_metadata_service_endpoint": ("AWS_EC2_METADATA_SERVICE_ENDPOINT", None),
    "ec2_metadata_service_endpoint_mode": ("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", None),
    "ec2_metadata_v1_disabled": ("AWS_EC2_METADATA_V1_DISABLED", False),
    "imds_use_ipv6": ("AWS_IMDS_USE_IPV6", False),
    "use_dualstack_endpoint": ("AWS_USE_DUALSTACK_ENDPOINT", None),
    "use_fips_endpoint": ("AWS_USE_FIPS_ENDPOINT", None),
}
_PROFILE_VARS = ("AWS_DEFAULT_PROFILE", "AWS_PROFILE")
_NOT_SERVED = object()


def _convert(name: str, value: str) -> Any:
    # botocore's conversions for these variables: int, ensure_boolean (case-insensitive "true"), none.
    if name in ("metadata_service_timeout", "metadata_service_num_attempts"):
        return int(value)
    if name in ("use_dualstack_endpoint", "use_fips_endpoint", "ec2_metadata_v1_disabled", "imds_use_ipv6"):
        return value.lower() == "true"
    return value


def env_config_variable(name: str, env: Mapping[str, str]) -> Any:
    """botocore's value of the configuration variable ``name`` when no config file is read and no
    profile is named; ``_NOT_SERVED`` for a variable not covered here."""
    if name == "profile":  # botocore's chain: the first of these set, even empty
        return next((env[var] for var in _PROFILE_VARS if var in env), None)
    if name not in _ENV_CONFIG:
        return _NOT_SERVED
    var, default = _ENV_CONFIG[name]
    return _convert(name, env[var]) if var in env else default


def _config_path(name: str, env: Mapping[str, str]) -> str:
    # As botocore's raw_config_parse expands the file name.
    return os.path.expanduser(os.path.expandvars(str(env_config_variable(name, env))))


def no_shared_config(env: Mapping[str, str]) -> bool:
    """Whether botocore would read no profile: neither shared file exists and no profile is named."""
    if any(var in env for var in _PROFILE_VARS):
        return False
    return not any(os.path.isfile(_config_path(name, env)) for name in ("config_file", "credentials_file"))


class FrozenEnvCredentials(NamedTuple):
    """The fields of botocore's ``ReadOnlyCredentials``, in its order."""

    access_key: str
    secret_key: str
    token: str | None
    account_id: str | None


class EnvCredentials:
    """Static keys from the environment: what botocore's EnvProvider returns (``method`` "env")."""

    method = "env"

    def __init__(self, frozen: FrozenEnvCredentials) -> None:
        self._frozen = frozen

    async def get_frozen_credentials(self) -> FrozenEnvCredentials:
        """The keys; environment credentials without an expiry never change."""
        return self._frozen


def env_credentials(env: Mapping[str, str]) -> EnvCredentials | None:
    """The environment's credentials when botocore's answer is certain and static; else None.

    None when a key is missing (botocore then tries its other sources, or raises for a secret key
    without an access key id) or ``AWS_CREDENTIAL_EXPIRATION`` is set (botocore makes them refreshable).
    """
    access_key, secret_key = env.get(_ACCESS_KEY, ""), env.get(_SECRET_KEY, "")
    if not access_key or not secret_key or env.get(_EXPIRY_TIME, ""):
        return None
    token = next((env[name] for name in _TOKENS if env.get(name, "")), None)
    account_id = env.get(_ACCOUNT_ID, "") or None
    return EnvCredentials(FrozenEnvCredentials(access_key, secret_key, token, account_id))


class AwsConfigSession:
    """The parts of a botocore session the default daemon reads, botocore.session imported on demand.

    No instance variables are set, as in ``botocore.session.get_session()``: the profile comes from
    ``AWS_PROFILE`` / ``AWS_DEFAULT_PROFILE``, and environment credentials come first in the chain.
    Any other attribute is the real session's (made at the first such read).
    """

    def __init__(self) -> None:
        self._env_only = no_shared_config(os.environ)
        self._store: Any = None
        self._config: dict[str, Any] | None = None
        self._profile: str | None = None
        self._session: Any = None
        self._loader: Any = None

    def instance_variables(self) -> dict[str, Any]:
        """None set (botocore's configuration store asks)."""
        return {}

    def get_config_variable(self, logical_name: str) -> Any:
        """The configuration variable, from the environment, the profile or botocore's default."""
        if self._env_only:
            value = env_config_variable(logical_name, os.environ)
            if value is not _NOT_SERVED:
                return value
        if self._store is None:
            from botocore.configprovider import ConfigValueStore, create_botocore_default_config_mapping

            self._store = ConfigValueStore(mapping=create_botocore_default_config_mapping(self))
        return self._store.get_config_variable(logical_name)

    @property
    def profile(self) -> str | None:
        """The profile named by the environment (None: the default one)."""
        if self._profile is None:
            self._profile = self.get_config_variable("profile")
        return self._profile

    @property
    def full_config(self) -> dict[str, Any]:
        """The config file with the credentials file's profiles merged in, as botocore reads them."""
        if self._config is None and self._env_only:
            self._config = {"profiles": {}}  # what botocore reads when neither file exists
        if self._config is None:
            from botocore.configloader import load_config, raw_config_parse
            from botocore.exceptions import ConfigNotFound

            try:
                self._config = load_config(self.get_config_variable("config_file"))
            except ConfigNotFound:
                self._config = {"profiles": {}}
            try:
                # Only the profiles' names matter here: a profile only in that file exists.
                for name, values in raw_config_parse(self.get_config_variable("credentials_file")).items():
                    self._config["profiles"].setdefault(name, {}).update(values)
            except ConfigNotFound:
                pass
        return self._config

    def get_scoped_config(self) -> dict[str, Any]:
        """The profile's section (ProfileNotFound for a named profile that does not exist)."""
        name = self.get_config_variable("profile")
        profiles: dict[str, Any] = self.full_config["profiles"]
        if name is None:
            return profiles.get("default", {})  # type: ignore[no-any-return]
        if name not in profiles:
            from botocore.exceptions import ProfileNotFound

            raise ProfileNotFound(profile=name)
        return profiles[name]  # type: ignore[no-any-return]

    def get_component(self, name: str) -> Any:
        """The session's ``data_loader`` (for SQS's endpoint rules) made as botocore makes it, else
        the botocore session's component."""
        if name != "data_loader":
            return self.botocore_session().get_component(name)
        if self._loader is None:
            from botocore.loaders import create_loader

            self._loader = create_loader(self.get_config_variable("data_path"))
        return self._loader

    def get_credentials(self) -> Any:
        """Environment credentials (see :func:`env_credentials`), else the botocore session's chain."""
        credentials = env_credentials(os.environ)
        return credentials if credentials is not None else self.botocore_session().get_credentials()

    def botocore_session(self) -> Any:
        """The real botocore session, made once."""
        if self._session is None:
            import botocore.session

            self._session = botocore.session.get_session()
        return self._session

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # private names, and copy, pickle and the like: not the session's
            raise AttributeError(name)
        return getattr(self.botocore_session(), name)
