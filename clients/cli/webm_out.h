/* clients/cli/webm_out.h - saves received VP9 frames as a WebM file, through fb_media's muxer
 * (stream/webm.h) writing to a plain file with pwrite().
 *
 * The muxer writes each frame as it arrives, so a file cut off by Ctrl-C or a crash still
 * plays; fb_webm_out_finish() adds the duration, cues and sizes and syncs the file.
 *
 * Thread-safety: none; one thread owns a writer.
 */
#ifndef FLIPBOOK_CLIENTS_CLI_WEBM_OUT_H
#define FLIPBOOK_CLIENTS_CLI_WEBM_OUT_H

#include <stddef.h>
#include <stdint.h>

typedef struct fb_webm_out fb_webm_out;

/* Creates (truncates) path and writes the WebM headers for one VP9 track. Returns 0, or -1
 * with err set. */
int fb_webm_out_open(fb_webm_out **out, const char *path, int width, int height, int fps,
                     char *err, size_t err_size);

/* Appends one frame; pts_us counts from the first frame of the file (0). The first frame must
 * be a keyframe. Returns 0, or -1 with err set (the writer is then unusable). */
int fb_webm_out_write(fb_webm_out *w, const uint8_t *vp9, size_t size, int is_key, int64_t pts_us,
                      char *err, size_t err_size);

/* Finalizes, syncs and closes the file, and frees the writer (also on failure). Returns 0, or
 * -1 with err set. *bytes_out (may be NULL) gets the final file size. */
int fb_webm_out_finish(fb_webm_out *w, uint64_t *bytes_out, char *err, size_t err_size);

#endif
