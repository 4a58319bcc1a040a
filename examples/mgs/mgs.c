/*
 * mgs.c - Modified Gram-Schmidt orthonormalization, repeated.
 *
 * The workload used to evaluate the "ghost process" checkpoint/restart of
 * Kerrighed (Vallee et al., ISPDC 2005), rebuilt as a self-checking batch job
 * for ghost: every repetition regenerates the input matrix from a seed that
 * mixes the repetition number with the previous repetition's checksum, so the
 * final checksum depends on every repetition having been computed exactly.
 * An uninterrupted run and a checkpointed, killed and resumed run must print
 * the same final checksum and write byte-identical result files.
 *
 * Usage: mgs [-n N] [-r REPS] [-o RESULT_FILE] [-q]
 *   -n N     matrix size: N vectors of N doubles (2..4000, default 500)
 *   -r REPS  repetitions (default 200: about 20 s at N=500 on a 2-core VM)
 *   -o FILE  result file: truncated at start, one line appended per
 *            repetition (and flushed), then the final lines
 *   -q       quiet: do not print the per-repetition lines on stdout
 *
 * C99, no rand() (OpenMP threads optional, see mgs() and README.md): the input comes from a splitmix64/xorshift
 * generator of our own, so results are identical on every machine that does
 * IEEE double arithmetic the same way (no -ffast-math).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* OpenMP pragmas only when built with -fopenmp (no unknown-pragma warnings otherwise). */
#ifdef _OPENMP
#include <omp.h>
#define OMP(x) _Pragma(OMP_STR(omp x))
#define OMP_STR(x) #x
#else
#define OMP(x)
#endif

#define N_MIN 2
#define N_MAX 4000
#define N_DEFAULT 500
#define REPS_DEFAULT 200
#define REPS_MAX 100000000L

static void usage_error(const char *msg, const char *arg)
{
    if (arg)
        fprintf(stderr, "mgs: %s: '%s' (usage: mgs [-n N] [-r REPS] [-o RESULT_FILE] [-q])\n", msg, arg);
    else
        fprintf(stderr, "mgs: %s (usage: mgs [-n N] [-r REPS] [-o RESULT_FILE] [-q])\n", msg);
    exit(2);
}

/* Parses a decimal integer in [lo, hi]; anything else is a usage error. */
static long parse_long(const char *s, long lo, long hi, const char *what)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be an integer in %ld..%ld", what, lo, hi);
        usage_error(msg, s);
    }
    return v;
}

/* splitmix64: seeds the generator from any 64-bit value. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* xorshift64*: the element generator. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* Fills a[N*N] with values in [-1, 1) from a seed made of rep and prev. */
static void generate(double *a, int n, long rep, double prev_checksum)
{
    uint64_t seed = (uint64_t)rep * 0xD1B54A32D192ED03ULL ^ double_bits(prev_checksum);
    uint64_t s = splitmix64(&seed);
    if (s == 0)
        s = 0x853C49E6748FEA9BULL;
    size_t total = (size_t)n * (size_t)n;
    for (size_t k = 0; k < total; k++) {
        /* 53 random bits -> [0,1) -> [-1,1) */
        double u = (double)(next_u64(&s) >> 11) * (1.0 / 9007199254740992.0);
        a[k] = 2.0 * u - 1.0;
    }
    /* A little diagonal weight keeps the vectors comfortably independent. */
    for (int i = 0; i < n; i++)
        a[(size_t)i * n + i] += 2.0;
}

/*
 * Modified Gram-Schmidt on the rows of q (row i = vector i, contiguous):
 * for each i, normalize q_i, then remove its component from every later row.
 *
 * Built with -fopenmp (make mgs-omp), the later rows are shared among the
 * threads. Each row is still updated by one thread with the same operations
 * in the same order, so the result is bit-for-bit the same for any number of
 * threads, and the same as the single-threaded build's.
 */
static void mgs(double *q, int n)
{
    OMP(parallel)
    for (int i = 0; i < n; i++) {
        double *qi = q + (size_t)i * n;
        OMP(single)
        {
            double norm2 = 0.0;
            for (int k = 0; k < n; k++)
                norm2 += qi[k] * qi[k];
            double inv = 1.0 / sqrt(norm2);
            for (int k = 0; k < n; k++)
                qi[k] *= inv;
        }   /* implied barrier: q_i is ready for everyone */
        OMP(for schedule(static))
        for (int j = i + 1; j < n; j++) {
            double *qj = q + (size_t)j * n;
            double r = 0.0;
            for (int k = 0; k < n; k++)
                r += qi[k] * qj[k];
            for (int k = 0; k < n; k++)
                qj[k] -= r * qi[k];
        }   /* implied barrier before the next i */
    }
}

/* Weighted sum of |q_ij|: a cheap fingerprint that sees every element. */
static double checksum(const double *q, int n)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        double row = 0.0;
        const double *qi = q + (size_t)i * n;
        for (int j = 0; j < n; j++)
            row += fabs(qi[j]) * (double)((j % 7) + 1);
        sum += row * (double)(i + 1);
    }
    return sum;
}

/* max |Q Q^T - I| over the rows of q: how orthonormal the result is. */
static double orthogonality_error(const double *q, int n)
{
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        const double *qi = q + (size_t)i * n;
        for (int j = i; j < n; j++) {
            const double *qj = q + (size_t)j * n;
            double d = 0.0;
            for (int k = 0; k < n; k++)
                d += qi[k] * qj[k];
            if (i == j)
                d -= 1.0;
            d = fabs(d);
            if (d > worst)
                worst = d;
        }
    }
    return worst;
}

int main(int argc, char **argv)
{
    long n = N_DEFAULT, reps = REPS_DEFAULT;
    const char *result_path = NULL;
    int quiet = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-n") == 0 || strcmp(a, "-r") == 0 || strcmp(a, "-o") == 0) {
            if (i + 1 >= argc)
                usage_error("option needs a value", a);
            const char *v = argv[++i];
            if (a[1] == 'n')
                n = parse_long(v, N_MIN, N_MAX, "N");
            else if (a[1] == 'r')
                reps = parse_long(v, 1, REPS_MAX, "REPS");
            else
                result_path = v;
        } else if (strcmp(a, "-q") == 0) {
            quiet = 1;
        } else {
            usage_error("unknown argument", a);
        }
    }

    size_t count = (size_t)n * (size_t)n;
    double *a = malloc(count * sizeof *a);  /* the input of the current rep */
    double *q = malloc(count * sizeof *q);  /* its copy, orthonormalized in place */
    if (!a || !q) {
        fprintf(stderr, "mgs: cannot allocate two %ldx%ld matrices\n", n, n);
        return 1;
    }

    FILE *out = NULL;
    if (result_path) {
        out = fopen(result_path, "w");
        if (!out) {
            fprintf(stderr, "mgs: cannot open result file '%s': %s\n", result_path, strerror(errno));
            return 1;
        }
    }

#ifdef _OPENMP
    fprintf(stderr, "mgs: %d OpenMP threads\n", omp_get_max_threads());
#endif
    double sum = 0.0;
    for (long rep = 1; rep <= reps; rep++) {
        generate(a, (int)n, rep, sum);
        memcpy(q, a, count * sizeof *q);
        mgs(q, (int)n);
        sum = checksum(q, (int)n);
        if (!quiet) {
            printf("rep %ld/%ld checksum %.17g\n", rep, reps, sum);
            fflush(stdout);
        }
        if (out) {
            fprintf(out, "rep %ld/%ld checksum %.17g\n", rep, reps, sum);
            fflush(out);
        }
    }

    double err = orthogonality_error(q, (int)n);
    printf("final checksum: %.17g\n", sum);
    printf("orthogonality error: %.3e\n", err);
    fflush(stdout);
    if (out) {
        fprintf(out, "final checksum: %.17g\n", sum);
        fprintf(out, "orthogonality error: %.3e\n", err);
        if (fclose(out) != 0) {
            fprintf(stderr, "mgs: cannot write result file '%s': %s\n", result_path, strerror(errno));
            return 1;
        }
    }
    free(a);
    free(q);
    if (!(err < 1e-6)) {
        fprintf(stderr, "mgs: orthogonality error %.3e is too large\n", err);
        return 1;
    }
    return 0;
}
