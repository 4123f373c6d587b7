/* The kernel's share of keeping a sparse image's holes, with no interpreter in the way:
 * write every non-zero run of an image at its offset into a new sparse file, one
 * pwrite(2) per run, then fsync(2).  Used by bench_disk_transfer.py ("sparse_write_c").
 *
 *   sparse_write RUNS DATA SIZE OUT
 *
 * RUNS holds (offset, length) pairs as native uint64_t; DATA the runs' bytes back to
 * back.  Both are read into memory before the clock starts; the clock runs from the
 * open(2) of OUT to the end of the fsync(2).  Prints the seconds.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void *slurp(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) { perror(path); exit(1); }
    char *buf = malloc(st.st_size ? st.st_size : 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, st.st_size - got);
        if (n <= 0) { perror(path); exit(1); }
        got += n;
    }
    close(fd);
    *len = got;
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s RUNS DATA SIZE OUT\n", argv[0]); return 2; }
    size_t runs_len, data_len;
    uint64_t *runs = slurp(argv[1], &runs_len);
    char *data = slurp(argv[2], &data_len);
    off_t size = strtoll(argv[3], NULL, 10);
    size_t count = runs_len / (2 * sizeof(uint64_t));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int fd = open(argv[4], O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 || ftruncate(fd, size) < 0) { perror(argv[4]); return 1; }
    size_t pos = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t off = runs[2 * i], len = runs[2 * i + 1];
        if (pos + len > data_len || pwrite(fd, data + pos, len, off) != (ssize_t)len) {
            perror("pwrite");
            return 1;
        }
        pos += len;
    }
    if (fsync(fd) < 0) { perror("fsync"); return 1; }
    close(fd);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.6f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
