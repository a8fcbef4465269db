/* daemon/hub.h - the daemon's socket-thread side: connections, sessions, roles, stats, shutdown.
 *
 * The hub implements the fb_ws_server hooks: it parses each client message (stream/protocol.h),
 * answers `info` with the `server` message (what it serves, before any session), creates and
 * joins sessions, checks roles (owner token, viewers may not steer), forwards
 * steering to the session threads, delivers their packets and replies to the right
 * connections, sends `stats` once a second, ends sessions whose owner has been gone for the
 * grace period, renders /metrics, and runs the orderly shutdown (recordings finished, `end`
 * with reason "shutdown", close 1001, then the loop stops). With the engine source it also
 * admits sessions through the scheduler (daemon/scheduler.h: KV pool and compute limits,
 * `session_limit` with a message saying how many fit), fixes their size and rate to the model's,
 * and joins anchor images sent in parts before handing them to the session.
 *
 * Thread-safety: everything here runs on the service thread (hooks and posted functions),
 * except fbd_hub_request_shutdown(), which any thread may call.
 */
#ifndef FLIPBOOK_DAEMON_HUB_H
#define FLIPBOOK_DAEMON_HUB_H

#include "daemon/config.h"
#include "daemon/scheduler.h"
#include "daemon/source.h"
#include "stream/ws_server.h"

typedef struct fbd_hub fbd_hub;

/* The hub for this configuration. `source` is the frame source new sessions use. */
fbd_hub *fbd_hub_new(const fbd_config *cfg, const fb_source_ops *source, const char *record_dir);
/* Fills the server hooks (user = hub). */
void fbd_hub_hooks(fbd_hub *h, fb_ws_hooks *hooks);
/* Tells the hub which server it serves (before the loop runs). */
void fbd_hub_attach(fbd_hub *h, fb_ws_server *srv);
/* Gives the hub the engine scheduler (engine source): admission, the model's size and rate,
 * anchor images. Before the loop runs; the hub does not own it. */
void fbd_hub_set_engine(fbd_hub *h, fbd_sched *sched);
/* Any thread: begin the orderly shutdown; the loop stops once it is done. Returns 0, or -1
 * when the request could not be queued. */
int fbd_hub_request_shutdown(fbd_hub *h);
/* After the loop has returned, before the server is freed: stops every session still running
 * and waits for its thread (their last events then run inside fb_ws_server_free). */
void fbd_hub_stop_sessions(fbd_hub *h);
/* After the server is freed. */
void fbd_hub_free(fbd_hub *h);

#define FLIPBOOKD_VERSION "0.1.0"

#endif
