/* The paced sender of bench_traffic.py: a Python sender cannot hold 50 000 datagrams/s on a
 * busy two-core machine without taking the core the receiver needs.
 *
 * udp_pace PORT FILE RATE SECONDS
 * FILE holds datagrams, each preceded by its length (uint32, network order); they are sent
 * cyclically to 127.0.0.1:PORT, RATE a second for SECONDS, in bursts of one millisecond
 * (sendmmsg), NetFlow v5 and v9 sequence numbers rewritten to run on. Prints a JSON line. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: udp_pace PORT FILE RATE SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]);
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror("open"); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *blob = malloc(size);
    if (fread(blob, 1, size, f) != (size_t)size) { perror("read"); return 1; }
    fclose(f);
    size_t n = 0, cap = 1024;
    unsigned char **data = malloc(cap * sizeof *data);
    uint32_t *lens = malloc(cap * sizeof *lens);
    for (long at = 0; at + 4 <= size;) {
        uint32_t len;
        memcpy(&len, blob + at, 4);
        len = ntohl(len);
        if (n == cap) {
            cap *= 2;
            data = realloc(data, cap * sizeof *data);
            lens = realloc(lens, cap * sizeof *lens);
        }
        data[n] = blob + at + 4;
        lens[n++] = len;
        at += 4 + len;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int buf = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (connect(s, (struct sockaddr *)&to, sizeof to) < 0) { perror("connect"); return 1; }
    long total = (long)(rate * seconds), sent = 0, v5_records = 0;
    uint32_t v5_seq = 0, v9_seq = 0;
    enum { BURST = 1024 };
    struct mmsghdr msgs[BURST];
    struct iovec iov[BURST];
    double start = now();
    while (sent < total) {
        long due = (long)((now() - start) * rate) + 1;
        if (due > total) due = total;
        if (due <= sent) {
            struct timespec t = {0, 200000};
            nanosleep(&t, NULL);
            continue;
        }
        int k = 0;
        while (sent + k < due && k < BURST) {
            size_t i = (sent + k) % n;
            unsigned char *d = data[i];
            if (lens[i] >= 24 && d[1] == 5) {
                uint32_t seq = htonl(v5_seq);
                memcpy(d + 16, &seq, 4);
                uint16_t count = (d[2] << 8) | d[3];
                v5_seq += count;
                v5_records += count;
            } else if (lens[i] >= 20 && d[1] == 9) {
                uint32_t seq = htonl(v9_seq++);
                memcpy(d + 12, &seq, 4);
            }
            iov[k].iov_base = d;
            iov[k].iov_len = lens[i];
            memset(&msgs[k], 0, sizeof msgs[k]);
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
            k++;
        }
        int done = 0;
        while (done < k) {
            int r = sendmmsg(s, msgs + done, k - done, 0);
            if (r < 0) { perror("sendmmsg"); return 1; }
            done += r;
        }
        sent += k;
    }
    double elapsed = now() - start;
    printf("{\"sent\": %ld, \"seconds\": %.6f, \"rate\": %.1f, \"v5_records\": %ld}\n", sent,
           elapsed, sent / elapsed, v5_records);
    return 0;
}
