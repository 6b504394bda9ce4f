"""Config of the sinks that face people and plant systems: the live web view and the MQTT bridge.

Kept apart from pipeline/config.py (which includes them under `sinks:`) so that the camera
processes, which import the line config, never import an HTTP server or an MQTT client.
"""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge.config import StrictModel

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_TOPIC_LEVEL = re.compile(r"^[^/#+\x00]{1,64}$")


def is_loopback_host(host: str) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ViewConfig(StrictModel):
    """The live page (`pipeline/view.py`): per camera the latest frame with its anomaly overlay, the score
    against the threshold, a score history, the latest events, per-stage latency and the counters."""

    host: str = Field("127.0.0.1", description="address the page listens on; anything but loopback needs a "
                      "token (set here, or one is made and logged at start-up)")
    port: int = Field(8765, ge=0, le=65535, description="0 = any free port (logged)")
    token: str | None = Field(None, min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_.~-]+$",
                              description="secret the browser presents once as ?token=...; required (made if "
                                          "unset) when host is not loopback")
    token_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                  description="environment variable holding the token (instead of token)")
    allow: tuple[str, ...] = Field((), description="client networks admitted (CIDR, e.g. 10.0.3.0/24); empty = any "
                                   "client that has the token")
    history: int = Field(120, ge=2, le=10_000, description="scores kept per camera for the history chart")
    events: int = Field(20, ge=1, le=1000, description="latest events listed per camera")
    max_clients: int = Field(16, ge=1, le=1000, description="live browser connections at once (more get 503); "
                             "connections of any kind: this + 32")
    overlay_range: tuple[float, float] | None = Field(
        None, description="anomaly-map values spanning the colour scale, the same for every frame; None = from 0.5x "
                          "to 1.5x node.threshold (the map is in the image score's units)")

    @field_validator("allow")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not a network like 10.0.3.0/24 or 192.168.1.7") from None
        return v

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)

    def secret(self) -> str | None:
        """The token from `token` or `token_env` (None: none configured)."""
        if self.token_env is None:
            return self.token
        value = os.environ.get(self.token_env)
        if value is not None and (len(value) < 16 or not re.fullmatch(r"[A-Za-z0-9_.~-]+", value)):
            raise ValueError(f"${self.token_env}: a view token is 16+ characters of A-Z a-z 0-9 _ . ~ -")
        return value


class MqttTlsConfig(StrictModel):
    ca_certs: Path | None = Field(None, description="CA bundle that signed the broker's certificate; None = the "
                                  "system's trust store")
    certfile: Path | None = Field(None, description="client certificate (brokers that authenticate clients by TLS)")
    keyfile: Path | None = None
    insecure: bool = Field(False, description="skip the broker hostname check (testing only)")


class MqttConfig(StrictModel):
    """The MQTT bridge (`pipeline/mqtt_sink.py`): events (from the durable event log, QoS 1), node and camera
    health (retained) to a plant's broker. Topic layout: `docs/mqtt.md`."""

    host: str = Field(description="broker host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="None = 1883, or 8883 with tls")
    prefix: str = Field("ssdnet", description="first topic level")
    line: str | None = Field(None, description="second topic level: this line's name; None = node.name")
    client_id: str | None = Field(None, max_length=128, description="None = ssdnet-<line>-<node name>")
    username: str | None = None
    password: str | None = Field(None, description="prefer password_env: a config file is often readable by many")
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                     description="environment variable holding the password")
    tls: MqttTlsConfig | None = Field(None, description="TLS to the broker (port 8883 by default)")
    qos: Literal[1, 2] = Field(1, description="QoS of events (at least once with 1: a retry may repeat an event, "
                               "its log_seq tells)")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive; the broker sends the last will after "
                             "about 1.5x this without a word (at once when the connection drops)")
    connect_timeout_s: float = Field(10.0, gt=0, le=300, description="a broker that accepts the connection but "
                                     "never answers is given up on (and retried) after this long")
    reconnect_max_s: float = Field(30.0, ge=1, le=3600, description="longest wait between reconnects (doubling)")
    health_s: float = Field(5.0, gt=0, le=3600, description="node and camera status are published this often")
    scores: bool = Field(False, description="also publish every frame's score, QoS 0 (camera/<name>/score)")
    max_inflight: int = Field(100, ge=1, le=65535, description="events sent and not yet acknowledged by the "
                              "broker at most; the rest waits in the event log")
    from_start: bool = Field(False, description="first start without a cursor file: publish every event already "
                             "in the log (default: only new ones)")

    @field_validator("prefix", "line")
    @classmethod
    def _level(cls, v: str | None) -> str | None:
        if v is not None and not all(_TOPIC_LEVEL.match(level) for level in v.split("/")):
            raise ValueError(f"{v!r}: topic levels must be 1-64 characters without '/', '+', '#'")
        return v

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.password is not None and self.password_env is not None:
            raise ValueError("set password or password_env, not both")
        if (self.password is not None or self.password_env is not None) and self.username is None:
            raise ValueError("a password needs a username")
        return self

    @property
    def broker_port(self) -> int:
        return self.port or (8883 if self.tls is not None else 1883)
