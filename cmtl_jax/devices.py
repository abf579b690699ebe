"""What the run is on: the device's memory (the one probe every memory check uses) and a one-line description of
the machine for results files."""

import os
import platform
from typing import Optional

import jax


def device_memory_bytes(device: Optional[jax.Device] = None) -> int:
  """Bytes of memory of `device` (default: the first local one): its allocator's limit on a GPU / TPU, the host's
  physical memory on a CPU."""
  device = device or jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit'])
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def machine() -> str:
  """e.g. `host cpu:cpu x2 (2 CPUs)`; under jax.distributed `... x2 in 2 processes (2 CPUs on this host)`."""
  device = jax.devices()[0]
  where = f'{platform.node()} {device.platform}:{device.device_kind} x{jax.device_count()}'
  if jax.process_count() > 1:
    return f'{where} in {jax.process_count()} processes ({os.cpu_count()} CPUs on this host)'
  return f'{where} ({os.cpu_count()} CPUs)'
