"""The ports ``runyard dev`` listens on, checked before anything starts: a port another
process holds is named, with the flag or setting that moves it, instead of a ready banner
followed by "the Temporal dev server exited"."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path

import typer

from runyard.settings import Settings


@dataclass(frozen=True)
class Port:
    host: str
    number: int
    what: str  # "the API"
    change: str  # "--port", "RUNYARD_METRICS_PORT"


def dev_ports(
    s: Settings, *, host: str, port: int, temporal: tuple[str, int, int] | None
) -> list[Port]:
    """Every fixed port ``runyard dev`` binds (``temporal``: the dev server's address, gRPC
    and UI ports, None when ``TEMPORAL_ADDRESS`` names one that runs elsewhere). The dev
    server's other ports (its HTTP API, its metrics) are free ports it picks itself."""
    ports = [Port(host, port, "the API", "--port")]
    if temporal is not None:
        ip, grpc, ui = temporal
        ports.append(Port(ip, grpc, "the Temporal dev server (gRPC)", "--temporal-port"))
        ports.append(Port(ip, ui, "the Temporal UI", "--ui-port"))
    if s.metrics_port is not None:
        ports.append(
            Port(s.metrics_host, s.metrics_port, "the API's metrics", "RUNYARD_METRICS_PORT")
        )
    if s.worker_metrics_port is not None:
        change = "RUNYARD_WORKER_METRICS_PORT"
        ports.append(Port(s.metrics_host, s.worker_metrics_port, "the worker's metrics", change))
        ports.append(
            Port(s.metrics_host, s.worker_metrics_port + 1, "the Temporal SDK's metrics", change)
        )
    return ports


def in_use(host: str, number: int) -> OSError | None:
    """Why ``host:number`` cannot be listened on (as the servers will: SO_REUSEADDR), or
    None when it can."""
    try:
        infos = socket.getaddrinfo(host, number, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc
    return None


def check_ports(ports: list[Port], log_file: Path) -> None:
    """Exit 2 naming each port that is taken (or repeated), the flag that moves it, and the
    Temporal dev server's log file."""
    problems: list[str] = []
    seen: dict[int, Port] = {}
    for p in ports:
        if p.number in seen:
            other = seen[p.number]
            problems.append(
                f"port {p.number} is given to both {other.what} ({other.change}) and "
                f"{p.what} ({p.change}): pick another with {p.change}"
            )
            continue
        seen[p.number] = p
        why = in_use(p.host, p.number)
        if why is None:
            continue
        reason = "is in use" if why.errno == errno.EADDRINUSE else f"cannot be used ({why})"
        problems.append(
            f"port {p.number} on {p.host} for {p.what} {reason}: "
            f"pick another with {p.change} (or stop what listens there)"
        )
    if problems:
        for line in problems:
            typer.echo(f"runyard dev: {line}", err=True)
        typer.echo(f"nothing was started; the Temporal dev server logs to {log_file}", err=True)
        raise typer.Exit(2)
