/*
 * sendfloor.c - what one small send() to each of many loopback TCP
 * connections costs the sending core, with no server in the way: the
 * floor under a chat line said in every room at once (issue 18), where
 * every member gets one frame of its own.
 *
 * The process connects N sockets to a child of its own (on another CPU
 * with -C), which reads them with epoll as a client would. Then, ROUNDS
 * times, it sends SIZE bytes on every socket in one loop, and reports the
 * sender's CPU (user + system, getrusage) per send and the time until
 * the reader has every byte.
 *
 *     cc -O2 -Wall -o bench/sendfloor bench/sendfloor.c
 *     bench/sendfloor [-n N] [-s SIZE] [-r ROUNDS] [-c CPU] [-C CPU]
 *
 * N must fit this process's open-file limit (and the child's).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void
pin(int c)
{
	cpu_set_t set;

	if (c < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(c, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0)
		perror("sched_setaffinity");
}

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

/*
 * The reader: accepts n connections, then reads until it has `want`
 * bytes, writing one byte to `done` each time a round's bytes are in.
 */
static void
reader(int lfd, int n, long round_bytes, int rounds, int done)
{
	struct epoll_event ev, evs[256];
	char buf[65536];
	long got = 0;
	int ep = epoll_create1(0);

	if (ep < 0)
		die("epoll_create1");
	for (int i = 0; i < n; i++) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			die("accept");
		ev.events = EPOLLIN;
		ev.data.fd = fd;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			die("epoll_ctl");
	}
	if (write(done, "a", 1) != 1)
		die("write");
	for (int r = 0; r < rounds; r++) {
		while (got < round_bytes * (r + 1)) {
			int k = epoll_wait(ep, evs, 256, -1);

			for (int i = 0; i < k; i++) {
				ssize_t m = read(evs[i].data.fd, buf,
				    sizeof(buf));

				if (m > 0)
					got += m;
			}
		}
		if (write(done, "r", 1) != 1)
			die("write");
	}
	_exit(0);
}

int
main(int argc, char **argv)
{
	int n = 19000, size = 64, rounds = 3, cpu_send = -1, cpu_read = -1;
	int opt, lfd, ready[2], *fd;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t salen = sizeof(sa);
	char *msg, c;
	pid_t pid;

	while ((opt = getopt(argc, argv, "n:s:r:c:C:")) != -1)
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 's': size = atoi(optarg); break;
		case 'r': rounds = atoi(optarg); break;
		case 'c': cpu_send = atoi(optarg); break;
		case 'C': cpu_read = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: sendfloor [-n N] [-s SIZE] "
			    "[-r ROUNDS] [-c CPU] [-C CPU]\n");
			return 2;
		}
	if (n < 1 || size < 1 || rounds < 1 ||
	    (msg = calloc(1, size)) == NULL || (fd = calloc(n, sizeof(*fd))) == NULL)
		return 2;
	memset(msg, 'x', size);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 4096) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0)
		die("listen");
	if (pipe(ready) != 0)
		die("pipe");
	if ((pid = fork()) < 0)
		die("fork");
	if (pid == 0) {
		pin(cpu_read);
		close(ready[0]);
		reader(lfd, n, (long)n * size, rounds, ready[1]);
	}
	pin(cpu_send);
	close(lfd);
	close(ready[1]);
	for (int i = 0; i < n; i++) {
		int one = 1;

		if ((fd[i] = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
		    connect(fd[i], (struct sockaddr *)&sa, sizeof(sa)) != 0)
			die("connect");
		/* as a WebSocket server's frames go: no Nagle delay */
		setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (read(ready[0], &c, 1) != 1)
		die("read");
	for (int r = 0; r < rounds; r++) {
		double t0 = now(), c0 = cpu(), t1, c1;

		for (int i = 0; i < n; i++)
			if (send(fd[i], msg, size, 0) != size)
				die("send");
		t1 = now();
		c1 = cpu();
		if (read(ready[0], &c, 1) != 1)
			die("read");
		printf("sendfloor n=%d size=%d round=%d send_secs=%.3f "
		    "all_read_secs=%.3f sends_per_s=%.0f "
		    "cpu_us_per_send=%.2f\n", n, size, r + 1, t1 - t0,
		    now() - t0, n / (t1 - t0), (c1 - c0) * 1e6 / n);
		fflush(stdout);
	}
	waitpid(pid, NULL, 0);
	return 0;
}
