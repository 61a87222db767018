#!/usr/bin/env bash
# Builds the board examples (examples/stm32f405-pyboard, examples/rp2040) in release and prints their flash and RAM
# use in Berkeley format (text, data, bss), next to a baseline without the target-driver crate (each project's
# `baseline` binary: the same chip set-up, executor, timer and LED), and the difference: what the target driver costs
# (driver, link and protocol together). On the STM32F405 it also prints the `superloop` program: the same
# application on the blocking API. For each program with the driver it also prints the driver's own code (see
# own_code), and for every program the largest stack frame one function sets up, so that a large temporary on the
# stack (the driver built through a copy, say) shows.
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
objdump_tool=$(dirname "$size_tool")/llvm-objdump
[ -x "$objdump_tool" ] || objdump_tool=""

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

# Prints "bytes function" for the largest stack frame any one function of an ELF sets up (what its prologue
# subtracts from sp, the registers it pushes not counted): a single temporary of a few kilobytes shows here. It is
# not the depth of the whole stack, which the call chains decide. Thumb: "sub sp, #n" (twice for large frames on
# the Cortex-M0+), "sub.w sp, sp, #n", or a negative constant from the literal pool added with "add sp, rN".
largest_frame() {
    [ -n "$objdump_tool" ] || { echo "? (no llvm-objdump)"; return; }
    "$objdump_tool" -d --no-show-raw-insn -C "$1" | awk '
        /^[0-9a-f]+ <.*>:$/ { fn = substr($0, index($0, "<") + 1); sub(">:$", "", fn); next }
        # The literal pool words by address (a pool may follow the function that loads from it).
        /\.word/ { a = $1; sub(":", "", a); words[a] = $NF; next }
        /\tsub(\.w|w)?\tsp, (sp, )?#0x[0-9a-f]+/ { frame[fn] += hex($NF); next }
        /\tldr\tr[0-9]+, \[pc, #0x[0-9a-f]+\]/ {
            r = $3; sub(",", "", r)
            for (i = 1; i <= NF; i++) if ($i == "@") { lit[r] = $(i + 1); sub("^0x", "", lit[r]) }
            next
        }
        # Resolved at the end, once every pool word is known.
        /\tadd\tsp, r[0-9]+$/ { n++; added_fn[n] = fn; added_at[n] = lit[$NF]; next }
        function hex(h,    i, v) {
            sub("^#", "", h); sub("^0x", "", h); v = 0
            for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
            return v
        }
        END {
            for (k = 1; k <= n; k++) {
                w = words[added_at[k]]
                if (w != "") { v = hex(w); if (v >= 2147483648) frame[added_fn[k]] += 4294967296 - v }
            }
            best = 0; name = "-"
            for (f in frame) if (frame[f] > best) { best = frame[f]; name = f }
            gsub(/\$LT\$/, "<", name); gsub(/\$GT\$/, ">", name); sub(/::h[0-9a-f]+$/, "", name)
            print best, name
        }'
}

# Prints the bytes of code that are the driver's own: every instruction whose chain of inlined functions (from the
# debug info, `addr2line -i`) holds a function of the target_driver, protocol or crc crates. The difference above
# also counts the compiler's memory functions, embassy's pin interrupts and the example's own code around the
# driver; this is the method of `cargo bloat` by crate, seeing through inlining. Code only (read-only data is not
# counted). Needs binutils' addr2line (there wherever the host's linker is); prints "?" without it.
own_code() {
    { command -v addr2line >/dev/null && [ -n "$objdump_tool" ]; } || { echo "?"; return; }
    "$objdump_tool" -d --no-show-raw-insn -j .text "$1" |
        awk '/^ *[0-9a-f]+:/ { a = $1; sub(":", "", a); print "0x" a }' |
        addr2line -a -f -i -C -e "$1" |
        awk '
            function hex(h,    i, v) {
                sub("^0x", "", h); v = 0
                for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1
                return v
            }
            # One block per address: the address, then a function name and a file:line per inlined frame.
            /^0x/ { if (n > 0 && own) total += hex($0) - at; at = hex($0); own = 0; n++; odd = 1; next }
            { if (odd && $0 ~ /^<?(target_driver|protocol|crc)::/) own = 1; odd = !odd }
            END { if (own) total += 2; print total + 0 }'
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
    printf '  %-40s %8s\n' "of which the driver's own code" "$(own_code "$with")"
    [ -n "$other" ] && printf '  %-40s %8s\n' "of which the driver's own code, $other" "$(own_code "$path")"
    printf '  (flash = text + data, static RAM = data + bss)\n'
    local bin frame fn
    for bin in "$main:$with" "baseline:$without" ${other:+"$other:$path"}; do
        read -r frame fn <<<"$(largest_frame "${bin#*:}")"
        printf '  largest stack frame, %-18s %6s bytes in %.70s\n' "${bin%%:*}:" "$frame" "$fn"
    done
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
