#!/usr/bin/env bash
# Builds the bridge image for the ESP32-C3 (bridge-firmware/boards/esp32c3, a standalone project) in release and
# prints its size: Berkeley text/data/bss, the bytes actually loaded (flash), and the static RAM of the bridge core
# (the service, its MQTT session and the packet buffer; not the WiFi stack). With `espflash` installed it also
# writes the flashable image `target/esp32c3-bridge.bin` (`espflash save-image --chip esp32c3`); without it, that
# step is skipped.
#
# Needs rustup's cargo (stable). Adds the riscv32imc target, rust-src and llvm-tools if missing (idempotent).
# Exits non-zero if the build fails.
set -euo pipefail
cd "$(dirname "$0")/../bridge-firmware/boards/esp32c3"
# The project's own target directory, whatever the caller's environment says: the paths below assume it.
unset CARGO_TARGET_DIR
start=$SECONDS

target=riscv32imc-unknown-none-elf
if command -v rustup >/dev/null 2>&1; then
    # In the project directory: for the toolchain its rust-toolchain.toml pins.
    rustup target add "$target" >/dev/null
    rustup component add rust-src llvm-tools >/dev/null
fi

tool() {
    local t
    for t in "$(rustc --print sysroot)"/lib/rustlib/*/bin/"$1"; do
        [ -x "$t" ] && echo "$t" && return
    done
    command -v "$2" || true
}
size_tool=$(tool llvm-size size)
nm_tool=$(tool llvm-nm nm)

locked=()
[ -f Cargo.lock ] && locked=(--locked)
echo "== cargo build --release ${locked[*]} in $(pwd)"
cargo build --release "${locked[@]}"
elf=target/$target/release/bridge-esp32c3
[ -f "$elf" ] || { echo "esp32c3-build.sh: $elf was not produced" >&2; exit 1; }

printf '\nESP32-C3 bridge image (%s)\n' "$elf"
if [ -n "$size_tool" ]; then
    "$size_tool" -B "$elf"
    # Berkeley text and bss count address-space placeholders (the *_dummy sections that align flash and RAM
    # mappings, the stack, the reclaimed heap); what is written to flash is the loaded sections' contents.
    "$size_tool" -A "$elf" | awk '
        $3 ~ /^[0-9]+$/ && $3 != 0 && $1 !~ /dummy|^\.bss|^\.stack|uninit|noinit|^\.debug|^\.eh_frame|^\.comment|metadata|^\.riscv/ {
            loaded += $2
        }
        $1 ~ /^\.bss/ { bss += $2 }
        $1 ~ /^\.data/ { data += $2 }
        END { printf "  loaded (flash) %d bytes; static RAM: .data* %d + .bss %d = %d bytes\n", loaded, data, bss, data + bss }'
else
    echo "esp32c3-build.sh: no llvm-size or size found; sizes skipped" >&2
fi
if [ -n "$nm_tool" ]; then
    # The bridge core's statics: the service with its MQTT session (CORE), the packet buffer (MQTT_TX_BUF); the
    # link driver and the loop's locals live in the main task's future (__embassy_main POOL).
    "$nm_tool" -S -C --size-sort --radix=d "$elf" | awk '
        / bridge_esp32c3::(CORE|MQTT_TX_BUF|TCP_BUFFERS|NET_RESOURCES)::/ || /bridge_esp32c3::__main::__embassy_main::POOL/ {
            n = $4; sub(/::h[0-9a-f]+$/, "", n); printf "  %-45s %7d bytes\n", n, $2
            if (n ~ /CORE|MQTT_TX_BUF|__embassy_main/) core += $2
        }
        END { printf "  %-45s %7d bytes (goal 12288)\n", "bridge core RAM (CORE + MQTT_TX_BUF + main task)", core }'
fi

if command -v espflash >/dev/null 2>&1; then
    bin=target/esp32c3-bridge.bin
    espflash save-image --chip esp32c3 "$elf" "$bin"
    printf '  flashable image: %s, %d bytes (espflash save-image)\n' "$bin" "$(wc -c <"$bin")"
else
    echo "  espflash not installed: no .bin written (cargo install espflash --locked; then espflash flash --monitor)"
fi
printf '\ntotal time: %d s\n' $((SECONDS - start))
