/* peer_watch.c: the lifelines between rank 0 and every other rank, and the thread on each rank
 * that watches its lifelines (see peer_watch.h for why). Rank 0 listens on an ephemeral TCP port of
 * every interface and broadcasts the port, its IPv4 addresses and a random token over MPI; every
 * other rank connects to the first address where a rank 0 welcomes its hello with that token, and
 * confirms (an address such as a container bridge's exists on every node: another job's rank 0 may
 * listen there, on the same port by chance, and must refuse the hello). */
#include "worker/peer_watch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/log.h"

#define MAX_ADDRESSES 16
#define CONNECT_TIMEOUT_MS 3000
#define HELLO_TIMEOUT_S 60 /* generous: rank 0's thread may wait long for a core on a loaded node */
#define WELCOME 'W'
#define GOODBYE 'B'

typedef struct { /* rank 0's side, broadcast to every rank */
    uint64_t token;                    /* this job's: a hello must carry it */
    uint32_t addresses[MAX_ADDRESSES]; /* IPv4 in network order: other interfaces first, loopback last */
    uint16_t port;                     /* network order; 0: rank 0 watches nothing */
    uint16_t n_addresses;
    char host[64];
} endpoint;

typedef struct { /* the first bytes on a lifeline: who is at the other end */
    uint64_t token;
    int32_t rank;
    char host[64];
} hello;

typedef struct {
    int fd;
    hello peer;
} lifeline;

static struct {
    bool running;
    pthread_t thread;
    int wake[2];     /* a byte on wake[1] ends the thread */
    int listener;    /* rank 0 only */
    lifeline *lines; /* rank 0: one per rank that connected; any other rank: its one to rank 0 */
    int n_lines, max_lines;
    struct pollfd *polled; /* max_lines + 2 */
    uint64_t token;        /* rank 0 */
} watch = {.wake = {-1, -1}, .listener = -1};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void release(void)
{
    for (int i = 0; i < watch.n_lines; i++)
        close_fd(&watch.lines[i].fd);
    close_fd(&watch.listener);
    close_fd(&watch.wake[0]);
    close_fd(&watch.wake[1]);
    free(watch.lines);
    free(watch.polled);
    watch.lines = NULL, watch.polled = NULL;
    watch.n_lines = watch.max_lines = 0;
}

static void host_name(char out[64])
{
    if (gethostname(out, 64) != 0)
        strcpy(out, "?");
    out[63] = '\0';
}

/* ---- the watching thread ------------------------------------------------ */

/* A lifeline closed without a goodbye: its process is gone. End this one too: every lifeline it
 * holds closes, so the rest of the job follows; a signal, not an exit code, so that the launcher
 * and cluster/shardq_job.sh see a rank killed (the job is requeued and resumes). */
static void peer_gone(const hello *peer)
{
    sq_log_error("rank %d (on %s) has ended without saying goodbye (killed, or its node's job step lost): "
                 "ending this rank so that no rank waits for it in a collective",
                 (int)peer->rank, peer->host);
    kill(getpid(), SIGKILL);
}

static bool limit_waits(int fd)
{
    struct timeval limit = {HELLO_TIMEOUT_S, 0};
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) == 0;
}

/* Rank 0: a new lifeline, once the rank has said who it is, with this job's token, and been welcomed. */
static void accept_lifeline(void)
{
    int fd = accept4(watch.listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    const char welcome = WELCOME;
    hello peer;
    if (watch.n_lines == watch.max_lines || !limit_waits(fd)
        || recv(fd, &peer, sizeof peer, MSG_WAITALL) != (ssize_t)sizeof peer || peer.token != watch.token
        || send(fd, &welcome, 1, MSG_NOSIGNAL) != 1) {
        close(fd); /* not one of this job's ranks */
        return;
    }
    peer.host[sizeof peer.host - 1] = '\0';
    watch.lines[watch.n_lines++] = (lifeline){fd, peer};
}

/* Something to read on a lifeline: the goodbye of a clean end, or the end of its process. */
static void read_lifeline(int i)
{
    char byte;
    ssize_t n = recv(watch.lines[i].fd, &byte, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n != 1 || byte != GOODBYE)
        peer_gone(&watch.lines[i].peer);
    close(watch.lines[i].fd);
    watch.lines[i] = watch.lines[--watch.n_lines];
}

static void *watch_lifelines(void *unused)
{
    (void)unused;
    for (;;) {
        int n = 0;
        watch.polled[n++] = (struct pollfd){.fd = watch.wake[0], .events = POLLIN};
        if (watch.listener >= 0)
            watch.polled[n++] = (struct pollfd){.fd = watch.listener, .events = POLLIN};
        const int first_line = n;
        for (int i = 0; i < watch.n_lines; i++)
            watch.polled[n++] = (struct pollfd){.fd = watch.lines[i].fd, .events = POLLIN};
        if (poll(watch.polled, (nfds_t)n, -1) < 0)
            continue; /* EINTR: a stop signal, handled by the main thread */
        if (watch.polled[0].revents)
            return NULL;
        /* lines from the last down, so that removing one does not move one not yet looked at */
        for (int i = n - 1; i >= first_line; i--)
            if (watch.polled[i].revents)
                read_lifeline(i - first_line);
        if (watch.listener >= 0 && watch.polled[1].revents)
            accept_lifeline();
    }
}

/* ---- setting up --------------------------------------------------------- */

/* Rank 0: listen on an ephemeral port of every interface; the addresses the others may try. */
static bool listen_for_lifelines(endpoint *self, int world_size)
{
    watch.listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t len = sizeof any;
    if (watch.listener < 0 || bind(watch.listener, (struct sockaddr *)&any, sizeof any) != 0
        || listen(watch.listener, world_size) != 0 || getsockname(watch.listener, (struct sockaddr *)&any, &len) != 0)
        return false;
    self->port = any.sin_port;
    struct ifaddrs *interfaces;
    if (getifaddrs(&interfaces) != 0)
        return false;
    for (int loopback = 0; loopback < 2; loopback++)
        for (struct ifaddrs *i = interfaces; i; i = i->ifa_next)
            if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP)
                && !!(i->ifa_flags & IFF_LOOPBACK) == loopback && self->n_addresses < MAX_ADDRESSES)
                self->addresses[self->n_addresses++] = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
    freeifaddrs(interfaces);
    return self->n_addresses > 0;
}

static int connect_within(uint32_t address, uint16_t port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = port, .sin_addr.s_addr = address};
    int error = 0;
    socklen_t len = sizeof error;
    if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (errno != EINPROGRESS || poll(&p, 1, timeout_ms) != 1
            || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) {
            close(fd);
            return -1;
        }
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Any rank but 0: a lifeline to rank 0 over the first of its addresses where it welcomes us. */
static bool connect_lifeline(const endpoint *root, int rank)
{
    hello me = {.token = root->token, .rank = rank};
    host_name(me.host);
    for (int i = 0; i < root->n_addresses; i++) {
        int fd = connect_within(root->addresses[i], root->port, CONNECT_TIMEOUT_MS);
        if (fd < 0)
            continue;
        char welcome = 0;
        if (send(fd, &me, sizeof me, MSG_NOSIGNAL) == (ssize_t)sizeof me && limit_waits(fd)
            && recv(fd, &welcome, 1, MSG_WAITALL) == 1 && welcome == WELCOME) {
            watch.lines[watch.n_lines].fd = fd;
            watch.lines[watch.n_lines].peer.rank = 0;
            memcpy(watch.lines[watch.n_lines].peer.host, root->host, sizeof root->host);
            watch.n_lines++;
            return true;
        }
        close(fd);
    }
    return false;
}

void sq_peer_watch_start(const sq_comm *comm)
{
    if (comm->world_size < 2)
        return;
    endpoint root = {0};
    watch.max_lines = comm->rank == 0 ? comm->world_size - 1 : 1;
    watch.lines = calloc((size_t)watch.max_lines, sizeof *watch.lines);
    watch.polled = calloc((size_t)watch.max_lines + 2, sizeof *watch.polled);
    bool ready = watch.lines && watch.polled && pipe2(watch.wake, O_CLOEXEC) == 0;
    if (comm->rank == 0) {
        ready = ready && getrandom(&watch.token, sizeof watch.token, 0) == (ssize_t)sizeof watch.token
                && listen_for_lifelines(&root, comm->world_size);
        root.token = watch.token;
        host_name(root.host);
        if (!ready) {
            sq_log_info("peer watch: rank 0 cannot listen for the other ranks (%s): the ranks run unwatched",
                        strerror(errno));
            root.port = 0;
        }
    }
    if (sq_comm_bcast_host(&root, sizeof root, 0) != SQ_OK || root.port == 0) {
        release();
        return;
    }
    if (comm->rank != 0 && !(ready && connect_lifeline(&root, comm->rank))) {
        sq_log_info("peer watch: cannot reach rank 0 on %s (TCP port %d): this rank will not notice if another "
                    "rank dies where the launcher does not see it", root.host, ntohs(root.port));
        release();
        return;
    }
    if (pthread_create(&watch.thread, NULL, watch_lifelines, NULL) != 0) {
        sq_log_info("peer watch: cannot start its thread: this rank runs unwatched");
        release();
        return;
    }
    watch.running = true;
}

void sq_peer_watch_stop(void)
{
    if (!watch.running)
        return;
    const char wake = 1, goodbye = GOODBYE;
    if (write(watch.wake[1], &wake, 1) != 1)
        pthread_cancel(watch.thread); /* poll() is a cancellation point */
    pthread_join(watch.thread, NULL);
    for (int i = 0; i < watch.n_lines; i++)
        (void)send(watch.lines[i].fd, &goodbye, 1, MSG_NOSIGNAL);
    release();
    watch.running = false;
}
