/* A fork bomb (a native test program, compiled by the test with cc): forks
 * until the kernel refuses, says how far it got as JSON, then kills its
 * children. Inside a sandbox the pids cgroup stops it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    static pid_t children[100000];
    int count = 0;
    for (;;) {
        pid_t pid = fork();
        if (pid < 0) {
            printf("{\"forked\": %d, \"refused\": \"%s\"}\n", count, errno == EAGAIN ? "EAGAIN" : strerror(errno));
            break;
        }
        if (pid == 0) { pause(); _exit(0); }
        children[count++] = pid;
        if (count == 100000) { printf("{\"forked\": %d, \"refused\": null}\n", count); break; }
    }
    fflush(stdout);
    for (int i = 0; i < count; i++) { kill(children[i], SIGKILL); waitpid(children[i], NULL, 0); }
    return 0;
}
