/* mailbox: see mailbox.h. */
#include "mailbox.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct mailbox {
	pthread_mutex_t lock;
	pthread_cond_t done; /* a sync call ran */
	struct mail *head, **tail;
	int efd;
	struct event *ev;
};

static void mail_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;

	(void)!read(fd, &v, sizeof(v));
	mailbox_drain(arg);
}

struct mailbox *mailbox_new(struct event_base *base)
{
	struct mailbox *mb = calloc(1, sizeof(*mb));

	if (mb == NULL) {
		return NULL;
	}
	mb->tail = &mb->head;
	mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (mb->efd >= 0) {
		mb->ev = event_new(base, mb->efd, EV_READ | EV_PERSIST, mail_cb, mb);
	}
	if (mb->ev == NULL || event_add(mb->ev, NULL) < 0) {
		if (mb->ev != NULL) {
			event_free(mb->ev);
		}
		if (mb->efd >= 0) {
			close(mb->efd);
		}
		free(mb);
		return NULL;
	}
	pthread_mutex_init(&mb->lock, NULL);
	pthread_cond_init(&mb->done, NULL);
	return mb;
}

void mailbox_free(struct mailbox *mb)
{
	if (mb == NULL) {
		return;
	}
	event_free(mb->ev);
	close(mb->efd);
	pthread_mutex_destroy(&mb->lock);
	pthread_cond_destroy(&mb->done);
	free(mb);
}

void mailbox_post(struct mailbox *mb, struct mail *m)
{
	bool was_empty;

	m->next = NULL;
	m->done = false;
	pthread_mutex_lock(&mb->lock);
	was_empty = mb->head == NULL;
	*mb->tail = m;
	mb->tail = &m->next;
	pthread_mutex_unlock(&mb->lock);
	/* The loop takes the whole queue after it read the eventfd: a post to a queue that is
	 * not empty is taken with the others. */
	if (was_empty) {
		uint64_t one = 1;

		(void)!write(mb->efd, &one, sizeof(one));
	}
}

void mailbox_call(struct mailbox *mb, void (*fn)(void *arg), void *arg)
{
	struct mail m = {fn, arg, true, false, NULL};

	mailbox_post(mb, &m);
	pthread_mutex_lock(&mb->lock);
	while (!m.done) {
		pthread_cond_wait(&mb->done, &mb->lock);
	}
	pthread_mutex_unlock(&mb->lock);
}

void mailbox_drain(struct mailbox *mb)
{
	struct mail *m;

	pthread_mutex_lock(&mb->lock);
	m = mb->head;
	mb->head = NULL;
	mb->tail = &mb->head;
	pthread_mutex_unlock(&mb->lock);
	while (m != NULL) {
		struct mail *next = m->next; /* an async m may be gone once it ran */

		if (m->sync) {
			m->fn(m->arg);
			pthread_mutex_lock(&mb->lock);
			m->done = true;
			pthread_cond_broadcast(&mb->done);
			pthread_mutex_unlock(&mb->lock);
		} else {
			m->fn(m->arg);
		}
		m = next;
	}
}
