/* A small static HTTP/1.1 server for bench/process.sh (and the image
 * tests): keep-alive, many connections (poll), answers GET /hold?ms=N after
 * N ms, GET /env with what it runs as (GREETING, working directory, uid and
 * gid, whether ./old.txt and ./new.txt exist), and anything else with
 * "hello\n" at once. Listens on 127.0.0.1:$PORT (8080 if unset).
 * Build: cc -static -O2 -o static-server static-server.c */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX 256

static char buffers[MAX][8192];
static int used[MAX];

static void answer(int fd, const char *request) {
    if (strncmp(request, "GET /env ", 9) == 0) {
        char cwd[256] = "?", body[512], reply[768];
        if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "?");
        const char *greeting = getenv("GREETING");
        int length = snprintf(body, sizeof body, "greeting=%s cwd=%s uid=%d gid=%d old=%d new=%d\n",
                              greeting ? greeting : "", cwd, (int)getuid(), (int)getgid(),
                              access("old.txt", F_OK) == 0, access("new.txt", F_OK) == 0);
        int total = snprintf(reply, sizeof reply,
                             "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s", length, body);
        if (write(fd, reply, total) < 0) return;
        return;
    }
    const char *hold = strstr(request, "GET /hold?ms=");
    if (hold == request) usleep(atoi(hold + 13) * 1000);
    static const char reply[] =
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\nhello\n";
    if (write(fd, reply, sizeof reply - 1) < 0) return;
}

int main(void) {
    const char *port = getenv("PORT");
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port ? atoi(port) : 8080)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 512)) {
        perror("listen");
        return 1;
    }
    struct pollfd fds[MAX];
    int count = 1;
    fds[0] = (struct pollfd){.fd = listener, .events = POLLIN};
    for (;;) {
        if (poll(fds, count, -1) < 0) continue;
        if (fds[0].revents & POLLIN && count < MAX) {
            int fd = accept(listener, NULL, NULL);
            if (fd >= 0) {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                used[count] = 0;
                fds[count++] = (struct pollfd){.fd = fd, .events = POLLIN};
            }
        }
        for (int i = 1; i < count; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t got = read(fds[i].fd, buffers[i] + used[i], sizeof buffers[i] - 1 - used[i]);
            if (got <= 0) {
                close(fds[i].fd);
                fds[i] = fds[count - 1];
                used[i] = used[count - 1];
                memcpy(buffers[i], buffers[count - 1], used[i]);
                count--;
                i--;
                continue;
            }
            used[i] += got;
            buffers[i][used[i]] = 0;
            char *end;
            while ((end = strstr(buffers[i], "\r\n\r\n"))) {
                answer(fds[i].fd, buffers[i]);
                int rest = used[i] - (int)(end + 4 - buffers[i]);
                memmove(buffers[i], end + 4, rest);
                used[i] = rest;
                buffers[i][rest] = 0;
            }
        }
    }
}
