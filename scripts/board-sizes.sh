#!/usr/bin/env bash
# Builds the board examples (examples/stm32f405-pyboard, examples/rp2040) in release and prints their flash and RAM
# use in Berkeley format (text, data, bss), next to a baseline without the target-driver crate (each project's
# `baseline` binary: the same chip set-up, executor, timer and LED), and the difference: what the target driver costs
# (driver, link and protocol together). On the STM32F405 it also prints the `superloop` program: the same
# application on the blocking API.
#
# Needs rustup's cargo (stable). Adds the two targets and llvm-tools if they are missing (both idempotent).
# Exits non-zero if a build fails, or if the RP2040 image lacks its second-stage bootloader at 0x10000000.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

if command -v rustup >/dev/null 2>&1; then
    rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi >/dev/null
    rustup component add llvm-tools >/dev/null
fi

# llvm-size from llvm-tools; otherwise cargo-binutils' rust-size or the system's size.
size_tool=""
for candidate in "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-size; do
    [ -x "$candidate" ] && size_tool=$candidate && break
done
if [ -z "$size_tool" ]; then
    size_tool=$(command -v rust-size || command -v size || true)
fi
if [ -z "$size_tool" ]; then
    echo "board-sizes.sh: no llvm-size, rust-size or size found" >&2
    exit 1
fi

# Builds one project; prints the paths of its executables, one per line, as "name path".
build() {
    local dir=$1 locked=()
    [ -f "$dir/Cargo.lock" ] && locked=(--locked)
    echo "== cargo build --release ${locked[*]} in $dir" >&2
    # JSON on stdout names the executables wherever the target dir is; diagnostics are rendered to stderr.
    (cd "$dir" && cargo build --release "${locked[@]}" --message-format=json-render-diagnostics) |
        sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*/\1 \2/p'
}

# Prints "text data bss" of an ELF.
sizes() {
    "$size_tool" -B "$1" | awk 'NR == 2 { print $1, $2, $3 }'
}

report() {
    local board=$1 dir=$2 main=$3 bins with without t1 d1 b1 t0 d0 b0
    # A failed build makes the pipeline in build() fail, which set -e and pipefail turn into an exit here.
    bins=$(build "$dir")
    with=$(awk -v n="$main" '$1 == n { print $2 }' <<<"$bins")
    without=$(awk '$1 == "baseline" { print $2 }' <<<"$bins")
    if [ -z "$with" ] || [ -z "$without" ]; then
        echo "board-sizes.sh: $dir did not produce both '$main' and 'baseline'" >&2
        exit 1
    fi
    read -r t1 d1 b1 <<<"$(sizes "$with")"
    read -r t0 d0 b0 <<<"$(sizes "$without")"
    printf '\n%s\n' "$board"
    printf '  %-40s %8s %8s %8s\n' "" text data bss
    printf '  %-40s %8d %8d %8d\n' "target-driver (with link and protocol)" "$t1" "$d1" "$b1"
    printf '  %-40s %8d %8d %8d\n' "baseline (no target-driver)" "$t0" "$d0" "$b0"
    printf '  %-40s %8d %8d %8d\n' "target-driver's cost" $((t1 - t0)) $((d1 - d0)) $((b1 - b0))
    local other=${4:-} path t2 d2 b2
    if [ -n "$other" ]; then
        path=$(awk -v n="$other" '$1 == n { print $2 }' <<<"$bins")
        [ -n "$path" ] || { echo "board-sizes.sh: $dir did not produce '$other'" >&2; exit 1; }
        read -r t2 d2 b2 <<<"$(sizes "$path")"
        printf '  %-40s %8d %8d %8d\n' "$other (blocking API, one loop)" "$t2" "$d2" "$b2"
        printf '  %-40s %8d %8d %8d\n' "its cost" $((t2 - t0)) $((d2 - d0)) $((b2 - b0))
    fi
    printf '  (flash = text + data, static RAM = data + bss)\n'
    LAST_ELF=$with
}

report "STM32F405RG (Pyboard v1.1), thumbv7em-none-eabihf" examples/stm32f405-pyboard stm32f405-pyboard superloop
report "RP2040 (Raspberry Pi Pico), thumbv6m-none-eabi" examples/rp2040 rp2040
# Without `-Tlink-rp.x` the link succeeds but .boot2 lands elsewhere and the Pico does not boot.
if "$size_tool" -A -x "$LAST_ELF" | grep -Eq '^\.boot2 +0x100 +0x10000000$'; then
    echo "  .boot2: 256 bytes at 0x10000000 (included in text)"
elif [ "$(basename "$size_tool")" = llvm-size ]; then
    echo "board-sizes.sh: .boot2 is not at 0x10000000 in $LAST_ELF: the Pico would not boot" >&2
    exit 1
fi

printf '\ntotal time: %d s\n' $((SECONDS - start))
