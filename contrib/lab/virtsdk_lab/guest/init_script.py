"""The test guest's ``/init`` (busybox sh), as text baked into the initramfs.

Serial console protocol (one event per line, fields separated by one space):

``BOOT <bootid>``
    once per boot; ``<bootid>`` is 16 random hex digits.
``MARKER <token> new|found|set``
    the first disk's marker: ``new`` (the disk had none, a random one was written),
    ``found`` (it was there, i.e. the disk survived), ``set`` (written from the
    ``vsdk.marker=<token>`` kernel argument).  ``NODISK`` if there is no /dev/vda.
``HEARTBEAT <bootid> <n> <uptime>``
    every ~0.5 s, ``n`` counting from 1 per boot, ``uptime`` from /proc/uptime.
``MEMCHECK <sha256> <n>``
    checksum of ``vsdk.memcheck_mib`` (default 8) MiB of random data filled into a
    tmpfs at boot, printed every ~3 s: unchanged across a live migration proves
    memory contents survived it.
``DIRTY <kbps> <ring_mib>``
    printed once if ``vsdk.dirty_kbps=<kbps>`` asked the guest to keep rewriting a
    ``ring_mib`` MiB tmpfs ring with non-zero (random) data at about that rate.
    Migration counts *distinct* dirty pages per memory pass, so the rate it sees is
    at most ``ring_mib`` per pass: with a slow (capped) pass of 30 s a 32 MiB ring
    shows about 1 MiB/s however fast it is rewritten.  Size the ring for the case.
``DIRTYSTAT <kib_written> <elapsed_cs>``
    every ~5 s while dirtying: KiB rewritten so far and centiseconds since the
    dirtier started (under emulation the guest may fall short of the asked rate).
``SHUTDOWN``
    the ACPI power button was pressed (``virsh shutdown``); the guest powers off.
``READY``
    after the marker and memory fill, right before the first heartbeat.
"""

from __future__ import annotations

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /mem /dirty
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
for m in $(cat /etc/modules.order); do insmod "/lib/modules/$m" 2>/dev/null; done
echo 1 > /proc/sys/kernel/printk

say() { echo "$*" > /dev/ttyS0; }
rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

DIRTY_KBPS=0
DIRTY_MIB=32
MEMCHECK_MIB=8
SET_MARKER=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vsdk.dirty_kbps=*) DIRTY_KBPS="${arg#*=}" ;;
    vsdk.dirty_mib=*) DIRTY_MIB="${arg#*=}" ;;
    vsdk.memcheck_mib=*) MEMCHECK_MIB="${arg#*=}" ;;
    vsdk.marker=*) SET_MARKER="${arg#*=}" ;;
  esac
done

# -- ACPI power button (virsh shutdown) powers the guest off --
mkdir -p /etc/acpi/PWRF
cat > /etc/acpi/PWRF/00000080 <<'EOS'
#!/bin/sh
echo SHUTDOWN > /dev/ttyS0
sync
poweroff -f
EOS
chmod +x /etc/acpi/PWRF/00000080
mkdir -p /var/log /var/run
acpid -c /etc/acpi -l /tmp/acpid.log -p /tmp/acpid.pid 2>/dev/null

BOOTID=$(rand_hex 8)
say "BOOT $BOOTID"

# -- disk marker: first 512 bytes of /dev/vda = "VSDKMARK <token>\n" + zeros --
i=0
while [ ! -b /dev/vda ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
write_marker() {
  printf 'VSDKMARK %s\n' "$1" | dd of=/dev/vda bs=512 count=1 conv=sync,notrunc,fsync 2>/dev/null
}
if [ -b /dev/vda ]; then
  if [ -n "$SET_MARKER" ]; then
    write_marker "$SET_MARKER"
    say "MARKER $SET_MARKER set"
  else
    line=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -d '\000' | head -n 1)
    case "$line" in
      "VSDKMARK "*) say "MARKER ${line#VSDKMARK } found" ;;
      *) tok=$(rand_hex 8); write_marker "$tok"; say "MARKER $tok new" ;;
    esac
  fi
else
  say "NODISK"
fi

# -- memory contents to check across a live migration --
mount -t tmpfs -o size=$((MEMCHECK_MIB + 1))m tmpfs /mem
dd if=/dev/urandom of=/mem/blob bs=1048576 count="$MEMCHECK_MIB" 2>/dev/null
(
  n=0
  while :; do
    n=$((n+1))
    say "MEMCHECK $(sha256sum /mem/blob | cut -d' ' -f1) $n"
    sleep 3
  done
) &

# -- optional memory dirtier: non-zero data, zero pages would cost nothing --
if [ "$DIRTY_KBPS" -gt 0 ] 2>/dev/null; then
  mount -t tmpfs -o size=$((DIRTY_MIB + 2))m tmpfs /dirty
  dd if=/dev/urandom of=/dirty/pool bs=1024 count=1024 2>/dev/null
  dd if=/dev/urandom of=/dirty/ring bs=1048576 count="$DIRTY_MIB" 2>/dev/null
  say "DIRTY $DIRTY_KBPS $DIRTY_MIB"
  (
    # paced by /proc/uptime (centiseconds): write a chunk whenever behind schedule,
    # never more than one second of backlog; DIRTYSTAT reports what was achieved.
    # Each pass over the ring shifts which pool data lands where, so a page's
    # content really changes (content-sampling dirty-rate probes see it too).
    chunk=$((DIRTY_KBPS / 20)); [ $chunk -lt 4 ] && chunk=4
    [ $chunk -gt 256 ] && chunk=256
    slots=$((DIRTY_MIB * 1024 / chunk)); slot=0
    read up _ < /proc/uptime; start=$((${up%.*} * 100 + 1${up#*.} - 100))
    written=0; credit=0; pass=0; next_report=500
    while :; do
      read up _ < /proc/uptime; now=$((${up%.*} * 100 + 1${up#*.} - 100))
      due=$(((now - start) * DIRTY_KBPS / 100))
      behind=$((due - written - credit))
      [ $behind -gt $DIRTY_KBPS ] && credit=$((credit + behind - DIRTY_KBPS))
      if [ $((written + credit)) -lt $due ]; then
        dd if=/dirty/pool of=/dirty/ring bs=1024 count=$chunk seek=$((slot * chunk)) \
          skip=$((((slot + pass) % (1024 / chunk)) * chunk)) conv=notrunc 2>/dev/null
        written=$((written + chunk))
        slot=$(((slot + 1) % slots))
        [ $slot -eq 0 ] && pass=$((pass + 1))
      else
        sleep 0.05
      fi
      if [ $((now - start)) -ge $next_report ]; then
        say "DIRTYSTAT $written $((now - start))"
        next_report=$((next_report + 500))
      fi
    done
  ) &
fi

say "READY"
n=0
while :; do
  n=$((n+1))
  read up _ < /proc/uptime
  say "HEARTBEAT $BOOTID $n $up"
  sleep 0.5
done
"""

MODULES = ("virtio_pci", "virtio_blk", "button", "evdev")
"""Kernel modules loaded at boot (dependencies are added and ordered automatically)."""
