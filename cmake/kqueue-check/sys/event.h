/* <sys/event.h> for compiling src/backend/kqueue.cpp where the OS has no
 * kqueue (ASYNCIO_KQUEUE_COMPILE_CHECK in CMakeLists.txt): the part of the
 * interface the backend uses, declared from FreeBSD's kqueue(2) manual page,
 * with FreeBSD's values. Nothing compiled against it is linked or run: it
 * only proves that the backend still compiles. macOS and the BSDs declare
 * the same names in their own header (macOS with intptr_t data and no
 * ext[]); the backend uses nothing but those names and EV_SET. */
#ifndef ASYNCIO_KQUEUE_CHECK_SYS_EVENT_H
#define ASYNCIO_KQUEUE_CHECK_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

struct kevent {
    uintptr_t ident;       /* what the filter watches: an fd, a pid, a signal */
    short filter;          /* EVFILT_* */
    unsigned short flags;  /* EV_* actions in, EV_* state out */
    unsigned int fflags;   /* the filter's NOTE_* flags */
    int64_t data;          /* the filter's value: a count, an errno with EV_ERROR */
    void *udata;           /* passed through unchanged */
    uint64_t ext[4];       /* extensions (FreeBSD 12 and later) */
};

/* Filters. */
#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_PROC (-5)
#define EVFILT_SIGNAL (-6)
#define EVFILT_USER (-11)

/* Actions. */
#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008

/* Flags. */
#define EV_ONESHOT 0x0010
#define EV_CLEAR 0x0020
#define EV_RECEIPT 0x0040
#define EV_DISPATCH 0x0080

/* Returned. */
#define EV_ERROR 0x4000
#define EV_EOF 0x8000

/* EVFILT_USER. */
#define NOTE_FFNOP 0x00000000
#define NOTE_TRIGGER 0x01000000

/* EVFILT_PROC. */
#define NOTE_EXIT 0x80000000U

#define EV_SET(kevp, a, b, c, d, e, f)   \
    do {                                 \
        struct kevent *ev_set_ = (kevp); \
        ev_set_->ident = (a);            \
        ev_set_->filter = (b);           \
        ev_set_->flags = (c);            \
        ev_set_->fflags = (d);           \
        ev_set_->data = (e);             \
        ev_set_->udata = (f);            \
        ev_set_->ext[0] = 0;             \
        ev_set_->ext[1] = 0;             \
        ev_set_->ext[2] = 0;             \
        ev_set_->ext[3] = 0;             \
    } while (0)

#ifdef __cplusplus
extern "C" {
#endif

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout);

#ifdef __cplusplus
}
#endif

#endif
