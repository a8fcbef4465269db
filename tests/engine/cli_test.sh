#!/bin/sh
# flipbook generate / bench on the golden tiny model: formats by extension, the same seed
# gives the same bytes, another seed different ones, bad usage exits 2, a missing default
# model exits 1 with a clear message, bench prints its figures.
# usage: cli_test.sh ENGINE_CLI GOLDEN_DIR WORKDIR
set -u
cli=$1; model=$2/tiny_model.safetensors; work=$3
rm -rf "$work"; mkdir -p "$work" || exit 1
fail=0
check() { if ! eval "$2"; then echo "FAILED: $1"; fail=1; fi; }

"$cli" generate --model "$model" --prompt "a red ball" --seed 7 --frames 20 -o "$work/a.rgb" -q
check "generate .rgb exits 0" '[ $? -eq 0 ]'
check ".rgb holds 20 frames of 64x64x3" '[ "$(wc -c < "$work/a.rgb")" -eq $((20 * 64 * 64 * 3)) ]'
"$cli" generate --model "$model" --prompt "a red ball" --seed 7 --frames 20 -o "$work/b.rgb" -q
check "same seed, same bytes" 'cmp -s "$work/a.rgb" "$work/b.rgb"'
"$cli" generate --model "$model" --prompt "a red ball" --seed 8 --frames 20 -o "$work/c.rgb" -q
check "another seed, other bytes" '! cmp -s "$work/a.rgb" "$work/c.rgb"'

"$cli" generate -m "$model" -p "a red ball" -s 7 -n 3 -o "$work/f.png" -q
check "generate .png exits 0" '[ $? -eq 0 ]'
check "three PNG files" '[ -s "$work/f_00000.png" ] && [ -s "$work/f_00002.png" ] && [ ! -e "$work/f_00003.png" ]'
mkdir -p "$work/seq"
"$cli" generate -m "$model" -p "a red ball" -s 7 -n 2 -o "$work/seq/%03d.png" -q
check "PNG name pattern" '[ -s "$work/seq/000.png" ] && [ -s "$work/seq/001.png" ]'
if command -v ffmpeg >/dev/null 2>&1; then
  ffmpeg -v error -i "$work/f_00001.png" -f rawvideo -pix_fmt rgb24 "$work/p1.rgb" </dev/null
  dd if="$work/a.rgb" of="$work/a1.rgb" bs=12288 skip=1 count=1 2>/dev/null
  check "PNG decodes to the same pixels as .rgb" 'cmp -s "$work/p1.rgb" "$work/a1.rgb"'
fi

"$cli" generate --model "$model" --prompt "a red ball" --frames 30 -o "$work/v.webm" -q
check "generate .webm exits 0" '[ $? -eq 0 ]'
check "WebM starts with the EBML magic" '[ "$(head -c 4 "$work/v.webm" | od -An -tx1 | tr -d " ")" = "1a45dfa3" ]'
if command -v ffprobe >/dev/null 2>&1; then
  n=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames,codec_name,width -of csv=p=0 "$work/v.webm")
  check "ffprobe reads 30 VP9 frames of width 64 ($n)" '[ "$n" = "vp9,64,30" ]'
fi

"$cli" generate --model "$model" --prompt "x" --frames 5 -o "$work/out.mp4" 2>"$work/err.txt"
check "unknown extension exits 2" '[ $? -eq 2 ] && grep -q ".webm, .rgb" "$work/err.txt"'
"$cli" generate --model "$model" --frames 5 -o "$work/x.rgb" 2>/dev/null
check "missing --prompt exits 2" '[ $? -eq 2 ]'
"$cli" generate --model "$model" --prompt "" --frames 5 -o "$work/x.rgb" 2>"$work/err.txt"
check "empty prompt exits 2" '[ $? -eq 2 ] && grep -q "empty" "$work/err.txt"'
mkdir -p "$work/nomodels"
FLIPBOOK_MODELS="$work/nomodels" "$cli" generate --model default --prompt "x" --frames 5 -o "$work/x.rgb" 2>"$work/err.txt"
check "missing default model exits 1 and says why" '[ $? -eq 1 ] && grep -q "not there yet" "$work/err.txt"'

"$cli" bench --model "$model" --chunks 3 --gemm-size 256 --json > "$work/bench.json"
check "bench --json exits 0" '[ $? -eq 0 ]'
check "bench reports its figures" 'grep -q "\"frames_per_s\"" "$work/bench.json" && grep -q "\"sgemm_peak_gflops\"" "$work/bench.json" && grep -q "\"kv_bytes_per_stream\": 61440" "$work/bench.json"'
"$cli" bench --model "$model" --chunks 2 --gemm-size 128 > "$work/bench.txt"
check "bench table" '[ $? -eq 0 ] && grep -q "DiT steps" "$work/bench.txt" && grep -q "peak RSS" "$work/bench.txt"'

[ $fail -eq 0 ] && { rm -rf "$work"; echo ok; }
exit $fail
