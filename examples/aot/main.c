/* Run a model built by `kiln compile` from C: read input 0 from a raw file (its bytes in
 * the input's dtype, row-major), run, write output 0 to a raw file.
 *
 *   ./main WEIGHTS|- INPUT.raw OUTPUT.raw [REPEAT]
 *
 * WEIGHTS is the model's .weights file, or - for weights embedded with --embed-params.
 * With REPEAT > 0 the model runs REPEAT more times and the median latency is printed.
 * A model compiled with a run-time batch size (--shape data=?,...) takes the batch size
 * from INPUT.raw's length. 
 * Only the functions of kiln's C interface are used, so any kiln model works. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

static size_t dtype_size(int code) {
    static const size_t sizes[] = {4, 8, 2, 1, 4, 1, 8, 1};  /* MXNet dtype codes 0-7 */
    return code >= 0 && code < 8 ? sizes[code] : 0;
}

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, kiln_last_error());
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    kiln_model *m;
    int64_t shape[8];
    int ndim;
    size_t in_bytes = 1, out_bytes = 1, batch_dims = 0;
    long file_bytes;
    if (argc < 4) {
        fprintf(stderr, "usage: %s WEIGHTS|- INPUT.raw OUTPUT.raw [REPEAT]\n", argv[0]);
        return 2;
    }
    if (kiln_model_create(strcmp(argv[1], "-") == 0 ? NULL : argv[1], &m))
        return fail("kiln_model_create");
    if (kiln_model_input_shape(m, 0, shape, &ndim))
        return fail("kiln_model_input_shape");
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0)
            batch_dims++;  /* -1: the batch size, chosen at run time */
        else
            in_bytes *= (size_t)shape[d];
    in_bytes *= dtype_size(kiln_model_input_dtype(m, 0));
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (file_bytes = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    if (batch_dims == 1 && in_bytes > 0 && file_bytes > 0 && (size_t)file_bytes % in_bytes == 0) {
        for (int d = 0; d < ndim; d++)
            if (shape[d] < 0)
                shape[d] = (int64_t)((size_t)file_bytes / in_bytes);
        in_bytes = (size_t)file_bytes;
    } else if (batch_dims > 0) {
        fprintf(stderr, "%s holds %ld bytes, not a whole number of samples of %zu bytes\n", argv[2], file_bytes,
                in_bytes);
        return 1;
    }
    void *input = malloc(in_bytes);
    if (input == NULL || fread(input, 1, in_bytes, f) != in_bytes) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", in_bytes, argv[2]);
        return 1;
    }
    fclose(f);
    if (kiln_model_set_input(m, kiln_model_input_name(m, 0), input, shape, ndim))
        return fail("kiln_model_set_input");
    if (kiln_model_run(m))
        return fail("kiln_model_run");
    int repeat = argc > 4 ? atoi(argv[4]) : 0;
    if (repeat > 0) {
        double *ms = malloc(sizeof(double) * (size_t)repeat);
        for (int r = 0; r < repeat; r++) {
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            if (kiln_model_run(m))
                return fail("kiln_model_run");
            clock_gettime(CLOCK_MONOTONIC, &t1);
            ms[r] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        }
        qsort(ms, (size_t)repeat, sizeof(double), cmp_double);
        printf("median latency over %d runs: %.4f ms\n", repeat, ms[repeat / 2]);
        free(ms);
    }
    if (kiln_model_output_shape(m, 0, shape, &ndim))
        return fail("kiln_model_output_shape");
    for (int d = 0; d < ndim; d++)
        out_bytes *= (size_t)shape[d];
    out_bytes *= dtype_size(kiln_model_output_dtype(m, 0));
    void *output = malloc(out_bytes);
    if (output == NULL || kiln_model_get_output(m, 0, output, out_bytes))
        return fail("kiln_model_get_output");
    f = fopen(argv[3], "wb");
    if (f == NULL || fwrite(output, 1, out_bytes, f) != out_bytes) {
        fprintf(stderr, "cannot write %s\n", argv[3]);
        return 1;
    }
    fclose(f);
    free(input);
    free(output);
    kiln_model_free(m);
    return 0;
}
