/* entropyd: serve health-tested randomness from hardware generators to QEMU guests and
 * programs over the EGD protocol.
 *
 * Start-up order: configuration -> sources (opened and checked) -> endpoints (bound) ->
 * daemonise -> memory locked -> privilege drop (--user) -> seccomp filter -> source
 * threads -> event-loop threads (--threads) -> event loop. The pool is locked before the drop,
 * while locking is allowed. Any failure before the loop is one line and exit status 1; nothing has
 * been served yet.
 *
 * Shutdown (SIGTERM, SIGINT; `-n` too) takes one path that frees everything and returns 0:
 * event-loop threads (joined) -> endpoints -> clients -> sources (woken, joined, closed) -> pool,
 * loop, configuration. */
#include "client.h"
#include "conf.h"
#include "conf_doc.h"
#include "endpoint.h"
#include "handover.h"
#include "inherit.h"
#include "log.h"
#include "pool.h"
#include "sandbox.h"
#include "share.h"
#include "src.h"
#include "src_detect.h"
#include "stats.h"
#include "workers.h"
#include "written.h"

#include <errno.h>
#include <event2/event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

_Static_assert(CONF_MAX_THREADS <= WORKERS_MAX, "--threads allows more than workers.c holds");

/* At shutdown, how long source threads get to end once woken. */
#define MAIN_SOURCES_JOIN_MS 2000

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;

	log_info("received %s; shutting down", strsignal((int)sig));
	event_base_loopbreak(base);
}

struct reload {
	struct endpoints *eps;
	struct sources *srcs;
	int argc;
	char **argv;
};

/* Whether the command line and the config file it names parse now; the error logged if not. */
static bool reload_parses(const struct reload *r)
{
	struct conf fresh;
	char err[512];
	char **copy = calloc((size_t)r->argc + 1, sizeof(*copy));
	int rc;

	if (copy == NULL) {
		log_warnx("reload refused: out of memory; the running configuration stays");
		return false;
	}
	/* getopt reorders what it scans: the re-exec gets the command line as given. */
	memcpy(copy, r->argv, (size_t)r->argc * sizeof(*copy));
	rc = conf_parse(&fresh, r->argc, copy, err, sizeof(err));
	conf_free(&fresh);
	free(copy);
	if (rc < 0) {
		log_warnx("reload refused, the running configuration stays: %s", err);
	}
	return rc == 0;
}

/* SIGHUP: re-execute with the same command line, which reads the config file again, keeping
 * every listening socket and pipe open: the new image adopts those its configuration still
 * names and closes the others (a UDP port that is never unbound keeps QEMU's UDP chardev
 * alive). Connected plain tcp and unix clients are handed over with their state
 * (handover.h); TLS clients are closed. A configuration that does not parse is refused
 * before anything changes. */
static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct reload *r = arg;

	log_info("received SIGHUP: reloading");
	if (!reload_parses(r)) {
		return;
	}
	sd_notify(0, "RELOADING=1");
	/* The source threads end first: the re-exec moves descriptors over theirs. Their bytes
	 * in the pool stay there for the handover. */
	(void)sources_join(r->srcs, MAIN_SOURCES_JOIN_MS);
	if (endpoints_reexec(r->eps, r->argv) < 0) {
		/* The sockets may have been moved already: continuing could serve nobody. */
		fatal("reload failed; exiting");
	}
}

/* One descriptor per guest: raise the soft limit to the hard one (often 1024 -> 524288),
 * and say in one line how many clients that allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warn("cannot read the descriptor limit (RLIMIT_NOFILE)");
		return;
	}
	was = rl.rlim_cur;
	if (rl.rlim_cur == rl.rlim_max) {
		log_info("descriptor limit: %llu (already the hard limit)",
			 (unsigned long long)rl.rlim_cur);
		return;
	}
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warn("descriptor limit: %llu; could not raise it to the hard limit %llu",
			 (unsigned long long)was, (unsigned long long)rl.rlim_max);
		return;
	}
	log_info("descriptor limit: %llu (raised from %llu to the hard limit)",
		 (unsigned long long)rl.rlim_cur, (unsigned long long)was);
}

/* Lock memory so tested bytes never reach swap; best effort with a clear warning. As root,
 * the lock limit is lifted first (it takes CAP_SYS_RESOURCE). Once the limit binds (after
 * the drop to --user, or when not root), later mappings are locked only if the limit is
 * infinite: else each new mapping (a thread's stack, a buffer) would fail past the limit.
 * The pool, allocated before, is locked in every case that the limit allows. */
static void lock_memory(bool dropping)
{
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
	int flags = MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT;

	if (geteuid() == 0) {
		(void)setrlimit(RLIMIT_MEMLOCK, &rl);
	}
	if ((dropping || geteuid() != 0) && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY) {
		flags = MCL_CURRENT;
		log_debug("memory mapped later is not locked (RLIMIT_MEMLOCK is finite; "
			  "LimitMEMLOCK=infinity locks it too)");
	}
	if (mlockall(flags) < 0) {
		log_warn("cannot lock memory (mlockall); the pool alone is locked if the limit "
			 "allows (raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK)");
	}
}

/* --threads: as given, or (0) one per CPU this process may run on. */
static unsigned thread_count(const struct conf *conf)
{
	cpu_set_t set;
	int n;

	if (conf->threads > 0) {
		return conf->threads;
	}
	n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
	return n < 1 ? 1 : n > (int)CONF_MAX_THREADS ? CONF_MAX_THREADS : (unsigned)n;
}

/* With more than one event-loop thread: the caches of the pool (one per thread and one for
 * the main thread's clients, pool/(n+1) bytes each, 4 KiB at least) and the threads. */
static struct workers *start_threads(struct event_base *base, struct pool *pool,
				     const struct conf *conf, struct share **sh)
{
	unsigned n = thread_count(conf);
	size_t cache = conf->pool_size / (n + 1);
	struct workers *ws;

	*sh = NULL;
	if (n < 2) {
		return NULL;
	}
	*sh = share_new(base, pool, n + 1, cache > 4096 ? cache : 4096);
	ws = *sh != NULL ? workers_new(base, *sh, conf->alpha_log2, n) : NULL;
	if (ws == NULL) {
		fatalx("cannot create %u event-loop threads", n);
	}
	log_info("%u event-loop threads serve the clients of tcp and unix listeners", n);
	return ws;
}

static bool need_drbg(const struct conf *conf)
{
	for (size_t i = 0; i < conf->nendpoints; i++) {
		if (conf->endpoints[i].opts.drbg) {
			return true;
		}
	}
	return false;
}

/* The min-entropy a pool byte carries at least: the pool does not keep each byte's source,
 * so the lowest h of the sources, and that of bytes peers write (write=on). */
static double drbg_min_entropy(const struct conf *conf, const struct sources *srcs)
{
	double h = sources_min_entropy(srcs);

	for (size_t i = 0; i < conf->nendpoints; i++) {
		if (conf->endpoints[i].opts.allow_write && WRITTEN_H < h) {
			h = WRITTEN_H;
		}
	}
	return h;
}

int main(int argc, char **argv)
{
	struct conf conf;
	struct pool *pool;
	struct sources *srcs;
	struct event_base *base;
	struct clients *cs;
	struct share *sh;
	struct workers *ws;
	struct endpoints *eps;
	struct event *sigev[3];
	struct sandbox *sb;
	struct stats *stats;
	struct reload reload;
	struct handover *handover;
	char err[512];
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	sigset_t sigs;
	bool joined;

	/* Blocked until the signal events are in place (a re-exec arrives with them blocked
	 * already): a SIGHUP, SIGTERM or SIGINT in between stays pending, and is acted on. */
	inherit_reload_signals(&sigs);
	sigprocmask(SIG_BLOCK, &sigs, NULL);

	/* getopt may reorder argv; a reload re-executes the command line as given. */
	for (int i = 0; args != NULL && i < argc; i++) {
		args[i] = argv[i];
	}
	if (args == NULL) {
		fprintf(stderr, "entropyd: out of memory\n");
		return 1;
	}
	if (conf_parse(&conf, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "entropyd: %s\n", err);
		conf_free(&conf);
		free(args);
		return 1;
	}
	if (conf.show != CONF_RUN) {
		conf_doc_show(conf.show, stdout);
		conf_free(&conf);
		free(args);
		return 0;
	}
	log_init("entropyd", true, conf.verbose);
	signal(SIGPIPE, SIG_IGN);
	/* First: while nothing else is open, the descriptors it names can only be clients. */
	handover = handover_load();
	if (conf.list_sources) {
		src_detect_list(stdout);
		conf_free(&conf);
		free(args);
		return 0;
	}

	pool = pool_new(conf.pool_size);
	if (pool == NULL) {
		fatal("cannot allocate the pool of %zu bytes", conf.pool_size);
	}
	srcs = sources_new(pool, conf.alpha_log2);
	if (srcs == NULL) {
		fatalx("out of memory");
	}
	for (size_t i = 0; i < conf.nsources; i++) {
		if (sources_add(srcs, &conf.sources[i], err, sizeof(err)) < 0) {
			fatalx("%s", err);
		}
	}
	if (conf.nsources == 0 && src_detect_add_default(srcs, err, sizeof(err)) < 0) {
		fatalx("%s", err);
	}
	if (conf.nendpoints == 0) {
		conf_default_endpoints(&conf);
	}
	if (conf_add_control(&conf, err, sizeof(err)) < 0) {
		fatalx("%s", err);
	}
	sb = sandbox_new(&conf, err, sizeof(err));
	if (sb == NULL) {
		fatalx("%s", err);
	}

	base = event_base_new();
	if (base == NULL) {
		fatalx("cannot create the event loop");
	}
	ws = start_threads(base, pool, &conf, &sh);
	cs = clients_new(base, sh != NULL ? share_cache(sh, 0) : pool, conf.alpha_log2);
	eps = endpoints_new(base, cs);
	stats = cs != NULL && eps != NULL ? stats_new(base, srcs, cs, eps, pool) : NULL;
	if (stats == NULL) {
		fatalx("out of memory");
	}
	if (sh != NULL) {
		clients_set_share(cs, share_slot(sh, 0), 0);
	}
	if (need_drbg(&conf) && (clients_drbg(cs, drbg_min_entropy(&conf, srcs)) < 0 ||
				 workers_drbg(ws, drbg_min_entropy(&conf, srcs)) < 0)) {
		fatalx("cannot create the DRBG for mode=drbg");
	}
	stats_set_workers(stats, ws);
	endpoints_set_workers(eps, ws);
	endpoints_set_stats(eps, stats);
	endpoints_set_handover(eps, handover);
	for (size_t i = 0; i < conf.nendpoints; i++) {
		if (endpoints_add(eps, &conf.endpoints[i], err, sizeof(err)) < 0) {
			endpoints_free(eps);
			fatalx("%s", err);
		}
	}
	endpoints_adopt(eps);
	endpoints_close_unclaimed(eps);
	if (conf.check) {
		log_info("configuration OK");
		goto out;
	}
	if (!conf.foreground) {
		if (daemon(0, 0) < 0) {
			fatal("cannot become a daemon");
		}
		log_init("entropyd", false, conf.verbose);
		/* libevent's backend (epoll) does not survive fork(): re-initialise it. */
		if (event_reinit(base) < 0 || workers_reinit(ws) < 0) {
			fatalx("cannot re-initialise the event loop after fork");
		}
	}
	lock_memory(sandbox_drops(sb));
	raise_fd_limit();
	if (sandbox_drop(sb, err, sizeof(err)) < 0 || sandbox_filter(sb, err, sizeof(err)) < 0) {
		fatalx("%s", err);
	}

	sigev[0] = evsignal_new(base, SIGTERM, stop_cb, base);
	sigev[1] = evsignal_new(base, SIGINT, stop_cb, base);
	reload = (struct reload){eps, srcs, argc, args};
	sigev[2] = evsignal_new(base, SIGHUP, hup_cb, &reload);
	for (int i = 0; i < 3; i++) {
		if (sigev[i] == NULL || event_add(sigev[i], NULL) < 0) {
			fatalx("cannot watch signals");
		}
	}
	/* Before the source threads start, so that they (and the exec: commands they start)
	 * do not inherit a blocked mask. A pending SIGHUP now means one more reload. */
	sigprocmask(SIG_UNBLOCK, &sigs, NULL);
	if (sources_start(srcs) < 0) {
		fatal("cannot start the source threads");
	}
	if (workers_start(ws) < 0) {
		fatal("cannot start the event-loop threads");
	}
	log_info("ready: %zu source(s), %zu endpoint(s), pool of %zu bytes", sources_count(srcs),
		 conf.nendpoints, conf.pool_size);
	sd_notify(0, "READY=1");

	event_base_dispatch(base);

	sd_notify(0, "STOPPING=1");
	workers_stop(ws); /* their clients' ends reach the endpoints, still there */
	sources_stop(srcs);
	for (int i = 0; i < 3; i++) {
		event_free(sigev[i]);
	}
out:
	/* Endpoints first: a UDP endpoint drops its peers (clients it tracks); clients of
	 * connecting endpoints are then closed without redialing. */
	endpoints_free(eps);
	workers_free(ws);
	clients_free(cs);
	share_free(sh);
	stats_free(stats);
	sandbox_free(sb);
	if (!conf.check) {
		sources_log_stats(srcs);
	}
	joined = sources_free(srcs, MAIN_SOURCES_JOIN_MS) == 0;
	if (!conf.check) {
		log_info("delivered %llu bytes in all; stopped",
			 (unsigned long long)pool_delivered(pool));
	}
	if (!joined) {
		/* A source thread is stuck in a read that nothing interrupts (sources_free logged
		 * which): the process exit ends it; its bytes can no longer reach a client. The
		 * leak check (LSan runs at exit(), not _exit()) is skipped for this run. */
		_exit(0);
	}
	event_base_free(base);
	pool_free(pool);
	conf_free(&conf);
	free(args);
	return 0;
}
