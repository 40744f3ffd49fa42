"""Announcing a server on the local network over mDNS (PROTOCOL.md §6, ``--announce``).

The service type is ``_p2p-introspect._tcp.local.``; the TXT record carries the
WebSocket path, the node's peer id and implementation, when the server started,
whether it requires a token, and the metrics port
(:func:`~libp2p_introspection.protocol.discovery.txt_properties`). Zeroconf
(python-zeroconf, which py-libp2p depends on) runs its own thread; registering
and unregistering, which wait for the announcements to go out, run in a worker
thread so that the node's trio loop never waits on the network.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import trio

from libp2p_introspection import config as defaults
from libp2p_introspection.protocol.discovery import (
    SERVICE_TYPE,
    ServerEntry,
    instance_name,
    txt_properties,
)

log = logging.getLogger(__name__)


def announced_addresses(host: str) -> list[str]:
    """The addresses an announcement of a server bound to ``host`` gives: ``host``
    itself, or for a wildcard bind (``0.0.0.0``, ``::``, ``""``) every non-loopback
    address of this machine's interfaces (IPv4 for ``0.0.0.0``)."""
    if host not in ("", "0.0.0.0", "::"):
        return [host]
    import ifaddr  # python-zeroconf's own dependency, for the interfaces' addresses

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            address = ipaddress.ip_address(text.partition("%")[0])
            if address.is_loopback or address.is_link_local:
                continue
            if host == "0.0.0.0" and address.version != 4:
                continue
            found.append(str(address))
    return found


def service_info(entry: ServerEntry, port: int, addresses: list[str]) -> Any:
    """The zeroconf ``ServiceInfo`` announcing ``entry`` on ``port`` at ``addresses``."""
    from zeroconf import ServiceInfo

    name = instance_name(entry, port)
    return ServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        port=port,
        properties=txt_properties(entry, defaults.PATH),
        parsed_addresses=addresses,
        server=f"{name.replace(' ', '-')}.local.",
    )


async def announce(
    entry: ServerEntry,
    port: int,
    host: str,
    *,
    interfaces: list[str] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Announce ``entry`` (a server on ``host:port``) until cancelled, then withdraw it.

    ``interfaces``: the addresses zeroconf sends on (default: ``host``, or every
    interface for a wildcard bind). A failure (no multicast, no address to
    announce) is logged at WARNING: the server goes on, unannounced.
    """
    from zeroconf import InterfaceChoice, Zeroconf

    addresses = announced_addresses(host)
    if not addresses:
        log.warning("not announcing %s over mDNS: this machine has no address beyond "
                    "loopback", entry.url)  # fmt: skip
        task_status.started()
        return
    if interfaces is None:
        interfaces = addresses if host not in ("", "0.0.0.0", "::") else None
    info = service_info(entry, port, addresses)

    def start() -> Any:
        zc = Zeroconf(interfaces=interfaces or InterfaceChoice.All)
        try:
            zc.register_service(info)
        except BaseException:
            zc.close()
            raise
        return zc

    try:
        zc = await trio.to_thread.run_sync(start)
    except Exception as exc:
        log.warning("cannot announce %s over mDNS: %s", entry.url, exc)
        task_status.started()
        return
    log.info("announcing %s over mDNS as %r at %s", entry.url, info.name, ", ".join(addresses))
    try:
        task_status.started()
        await trio.sleep_forever()
    finally:

        def stop() -> None:
            try:
                zc.unregister_service(info)
            finally:
                zc.close()

        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await trio.to_thread.run_sync(stop, abandon_on_cancel=True)
