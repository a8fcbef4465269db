#!/bin/sh
# `flipbook generate --switch/--transition/--skip` on the golden tiny model (64x64, chunks of
# 8 frames, the first 5): frames before the switch are those of the unswitched stream and the
# ones from the switch chunk on differ; a switch between boundaries waits for the next one;
# every transition runs and is deterministic; --skip writes exactly the later frames of the
# same stream; PNG names count stream frames; bad values exit 2 with the reason.
# usage: cli_generate_test.sh FLIPBOOK GOLDEN_DIR WORKDIR
set -u
cli=$1; model=$2/tiny_model.safetensors; work=$3
rm -rf "$work"; mkdir -p "$work" || exit 1
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
F=12288   # bytes per 64x64 RGB frame
gen() { "$cli" generate --model "$model" --prompt "a red ball on a grid" --seed 5 -q --threads 1 "$@"; }
# frame FILE N: the bytes of frame N
frame() { dd if="$1" bs=$F skip="$2" count=1 2>/dev/null; }
same_frames() {  # same_frames A B FIRST LAST: frames FIRST..LAST equal in A and B
  i=$3; while [ "$i" -le "$4" ]; do
    [ "$(frame "$1" "$i" | od -An -tx1 | md5sum)" = "$(frame "$2" "$i" | od -An -tx1 | md5sum)" ] || return 1
    i=$((i + 1)); done; return 0; }
diff_frames() {  # every frame FIRST..LAST differs
  i=$3; while [ "$i" -le "$4" ]; do
    [ "$(frame "$1" "$i" | od -An -tx1 | md5sum)" != "$(frame "$2" "$i" | od -An -tx1 | md5sum)" ] || return 1
    i=$((i + 1)); done; return 0; }

gen --frames 29 -o "$work/plain.rgb"
check "plain stream" '[ $? -eq 0 ] && [ "$(wc -c < "$work/plain.rgb")" -eq $((29 * F)) ]'
gen --frames 29 -o "$work/sw.rgb" --switch "13:a blue box at night"
check "--switch exits 0, 29 frames" '[ $? -eq 0 ] && [ "$(wc -c < "$work/sw.rgb")" -eq $((29 * F)) ]'
check "frames 0-12 as without the switch" 'same_frames "$work/plain.rgb" "$work/sw.rgb" 0 12'
check "frames 13-28 differ (switch at the chunk starting at 13)" 'diff_frames "$work/plain.rgb" "$work/sw.rgb" 13 28'
gen --frames 29 -o "$work/sw9.rgb" --switch "9:a blue box at night"
check "a switch at frame 9 waits for the boundary at 13" 'cmp -s "$work/sw.rgb" "$work/sw9.rgb"'
gen --frames 29 -o "$work/sw2.rgb" --switch "13:a blue box at night"
check "same switch, same bytes" 'cmp -s "$work/sw.rgb" "$work/sw2.rgb"'
gen --frames 37 -o "$work/two.rgb" --switch "21:a green ball on the sand" --switch "13:a blue box at night"
check "two switches, given in any order" '[ $? -eq 0 ] && same_frames "$work/sw.rgb" "$work/two.rgb" 0 20 && diff_frames "$work/sw.rgb" "$work/two.rgb" 21 28'
for tr in recache blend blend:2; do
  gen --frames 29 -o "$work/t1.rgb" --switch "5:a blue box at night" --transition $tr
  r1=$?
  gen --frames 29 -o "$work/t2.rgb" --switch "5:a blue box at night" --transition $tr
  check "--transition $tr runs and is deterministic" '[ $r1 -eq 0 ] && cmp -s "$work/t1.rgb" "$work/t2.rgb" && same_frames "$work/plain.rgb" "$work/t1.rgb" 0 4'
done
gen --frames 29 -o "$work/tc.rgb" --switch "5:a blue box at night" --transition recache
gen --frames 29 -o "$work/tb.rgb" --switch "5:a blue box at night" --transition blend:4
check "recache and blend differ from each other" '! cmp -s "$work/tc.rgb" "$work/tb.rgb"'

gen --frames 10 --skip 19 -o "$work/skip.rgb"
check "--skip 19 --frames 10: 10 frames" '[ $? -eq 0 ] && [ "$(wc -c < "$work/skip.rgb")" -eq $((10 * F)) ]'
dd if="$work/plain.rgb" of="$work/tail.rgb" bs=$F skip=19 count=10 2>/dev/null
check "--skip gives frames 19-28 of the same stream" 'cmp -s "$work/skip.rgb" "$work/tail.rgb"'
gen --frames 10 --skip 19 -o "$work/skipsw.rgb" --switch "13:a blue box at night"
dd if="$work/sw.rgb" of="$work/swtail.rgb" bs=$F skip=19 count=10 2>/dev/null
check "--skip with a switch before it" 'cmp -s "$work/skipsw.rgb" "$work/swtail.rgb"'
mkdir -p "$work/png"
gen --frames 2 --skip 20 -o "$work/png/%05d.png"
check "PNG names count stream frames" '[ -s "$work/png/00020.png" ] && [ -s "$work/png/00021.png" ] && [ ! -e "$work/png/00000.png" ]'
"$cli" generate --model "$model" --prompt "a red ball" --frames 3 --skip 5 -o "$work/s.rgb" 2>"$work/err.txt"
check "progress says what was skipped and written" 'grep -q "skipping" "$work/err.txt" && grep -q "frames (5..7)" "$work/err.txt"'

bad() {  # bad NAME PATTERN ARGS...: exit 2 and a message matching PATTERN
  name=$1; pat=$2; shift 2
  gen -o "$work/bad.rgb" "$@" 2>"$work/err.txt"
  rc=$?
  check "$name: exit 2 ($(head -c 150 "$work/err.txt"))" '[ $rc -eq 2 ] && grep -q "$pat" "$work/err.txt"'
}
bad "switch beyond --frames" "beyond the last frame" --frames 20 --switch "20:a blue box"
bad "switch whose boundary is past the end" "take effect at frame 21" --frames 20 --switch "14:a blue box"
bad "switch without a colon" "FRAME:TEXT" --frames 20 --switch "a blue box"
bad "switch with a bad frame" "whole frame number" --frames 20 --switch "1x:a blue box"
bad "switch at frame 0" "1 or more" --frames 20 --switch "0:a blue box"
bad "switch with no text" "empty" --frames 20 --switch "5:  "
bad "two switches at one boundary" "both take effect" --frames 29 --switch "6:a" --switch "13:b"
bad "unknown transition" "cut, recache, blend" --frames 20 --switch "5:x" --transition fade
bad "blend of 0 chunks" "blend:N" --frames 20 --transition blend:0
bad "negative skip" "skip" --frames 20 --skip -3

[ $fail -eq 0 ] && { rm -rf "$work"; echo "all checks passed"; }
exit $fail
