#!/bin/busybox sh
# /init of the IPVS test guest (see xtask/src/vm.rs and docs/ipvs-vm.md). Runs as PID 1 in the
# initramfs: loads the modules, builds the guest's root (the host's / over 9p, read-only, under an
# overlay with a tmpfs upper), then serves jobs from the exchange share, or gives a shell when the
# kernel command line says `xdvm.shell`.

/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

poweroff_now() {
    sync
    echo o > /proc/sysrq-trigger
    sleep 60
}

fail() {
    echo "xdvm: $*" >&2
    poweroff_now
}

mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# Named NN-module.ko in dependency order by the host (each module's .modinfo `depends=`).
for module in /lib/modules/*.ko; do
    insmod "$module" || fail "insmod $module failed"
done

R=/newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower \
    || fail "cannot mount the host's root (9p tag hostroot)"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work $R \
    || fail "cannot mount the overlay root"
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t tmpfs -o mode=0755 run $R/run
mount -t tmpfs -o mode=1777 tmp $R/tmp
# On Debian /var/run is a link to /run; mounting on it here would follow it outside $R.
[ -L $R/var/run ] || mount -t tmpfs -o mode=0755 varrun $R/var/run
mount -t bpf bpf $R/sys/fs/bpf 2>/dev/null
mkdir -p $R/exchange
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=512000 exchange $R/exchange \
    || fail "cannot mount the exchange share (9p tag exchange)"
hostname xdvm
ip link set lo up

X=$R/exchange
for word in $(cat /proc/cmdline); do
    if [ "$word" = xdvm.shell ]; then
        echo "xdvm: guest shell (the host's / read-only under a tmpfs overlay; IPVS modules loaded)."
        echo "xdvm: the host's exchange directory is /exchange; exit or Ctrl-D powers the guest off."
        setsid cttyhack chroot $R /bin/bash -l
        poweroff_now
    fi
done

# One job: exchange/run/ID/{cmd,timeout} in; stdout, stderr, then status (written last, by rename)
# out. Runs with /bin/sh -c inside the guest root, its own timeout enforced by coreutils timeout
# (which stops the job's whole process group).
run_job() {
    dir=$X/run/$1
    read -r limit < $dir/timeout
    chroot $R /usr/bin/timeout -k 5 "$limit" /bin/sh -c "$(cat $dir/cmd)" \
        < /dev/null > $dir/stdout 2> $dir/stderr 3<&-
    echo $? > $dir/.status
    mv $dir/.status $dir/status
}

# The host submits a job by renaming a complete directory into jobs/, then writes a line to the
# second serial port (ttyS1) to wake this loop, which blocks there rather than polling the share
# (polling it every 20 ms cost a third of a host core). A job is claimed by moving it to run/, so
# the guest never sees half a job. `poweroff` on the port, an exchange/poweroff file or no
# exchange/jobs (the host is gone) stops the guest.
serve() {
    stty -F /dev/ttyS1 raw -echo clocal || fail "no job port (ttyS1)"
    exec 3< /dev/ttyS1
    mkdir -p $X/run
    echo ready > $X/.ready
    mv $X/.ready $X/ready
    while [ -d $X/jobs ] && [ ! -e $X/poweroff ]; do
        for job in $X/jobs/*; do
            [ -d "$job" ] || continue
            id=${job##*/}
            if mv "$job" $X/run/$id; then
                run_job $id &
            fi
        done
        word=
        read -r -t 5 word <&3
        [ "$word" != poweroff ] || break
    done
}

# Served from a child: PID 1 is a session leader, and ttyS1 would become the controlling
# terminal of every job. PID 1 reaps the orphans (daemons the jobs started) meanwhile.
serve &
wait
poweroff_now
