/* collector._native, third part: the remote-write encoder's commit loop for a destination that
 * sends every series with the labels the scrape gave it (no external labels, no write
 * relabeling): each sample's TimeSeries is encoded from its series' label set in the series
 * registry, so the destination keeps nothing per series.
 *
 * Why not pre-encoded: a destination's per-series encoding (collector/remote/encodings.py) is
 * about 146 bytes a series, more than the label set it is made from; writing a label set's
 * protobuf fields is a few short copies, which C does in tens of nanoseconds, so the bytes
 * are made where they are sent instead of kept. The Python reference is
 * collector/remote/encoder.py `_py_encode_labelled`; the pure-Python agent keeps the per-series
 * encodings instead (the same bytes, tests/remote/test_encoder_labelled.py). */

#include "_native.h"

#include <string.h>

const char collector_encode_labelled_doc[] = PyDoc_STR(
"encode_labelled(samples, start, ts, label_sets, hist, runs, /) -> stop\n"
"\n"
"From ``samples[start]`` on, while a sample is ``(ref, value, ts)`` with this ``ts``, its\n"
"series' label set ``label_sets[ref]`` is a tuple of at most 64 ``(name, value)`` str pairs\n"
"and ``ref`` is not a key of the dict ``hist``: appends the sample's ``TimeSeries`` field up to\n"
"its timestamp field (what `fast_prefixes` of the label bytes gives, plus the packed value\n"
"for a non-zero one) to ``runs[ref % len(runs)]``. Returns the index of the first sample not\n"
"handled, which Python takes (another timestamp, an unknown ref, a histogram series, any\n"
"other type, a name or value that is not valid UTF-8).");

#define MAX_PAIRS 64
#define SCRATCH (64 * 1024)

/* One sample's label fields, written before their length is known. The GIL is held
 * throughout and nothing in the loop can run Python code, so one buffer serves every call. */
static char scratch[SCRATCH];

/* A str's UTF-8: its data and size; NULL (exception cleared) when it has none. */
static inline const char *
utf8_of(PyObject *s, Py_ssize_t *size)
{
    if (PyUnicode_IS_ASCII(s)) { /* its data is its UTF-8 */
        *size = PyUnicode_GET_LENGTH(s);
        return (const char *)PyUnicode_DATA(s);
    }
    const char *data = PyUnicode_AsUTF8AndSize(s, size);
    if (data == NULL)
        PyErr_Clear(); /* lone surrogates: Python's `str.encode` raises, in Python */
    return data;
}

static inline Py_ssize_t
varint_len(size_t n)
{
    Py_ssize_t k = 1;
    while (n >= 0x80) {
        n >>= 7;
        k++;
    }
    return k;
}

static inline char *
put_varint(char *p, size_t n)
{
    while (n >= 0x80) {
        *p++ = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    *p++ = (char)n;
    return p;
}

/* One string field (tag, length, bytes) of a Label; proto3 omits an empty one. */
static inline Py_ssize_t
field_len(Py_ssize_t n)
{
    return n ? 1 + varint_len((size_t)n) + n : 0;
}

static inline char *
put_field(char *p, char tag, const char *data, Py_ssize_t n)
{
    if (n) {
        *p++ = tag;
        p = put_varint(p, (size_t)n);
        memcpy(p, data, (size_t)n);
        p += n;
    }
    return p;
}

PyObject *
collector_encode_labelled(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "encode_labelled expected 6 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *samples = args[0], *label_sets = args[3], *hist = args[4], *runs = args[5];
    if (!PyList_CheckExact(samples) || !PyList_CheckExact(label_sets) || !PyDict_CheckExact(hist)
        || !PyList_CheckExact(runs) || PyList_GET_SIZE(runs) == 0) {
        PyErr_SetString(PyExc_TypeError, "encode_labelled: samples list, label sets list, "
                                         "histogram series dict and a non-empty runs list "
                                         "expected");
        return NULL;
    }
    Py_ssize_t nruns = PyList_GET_SIZE(runs);
    Py_ssize_t total = PyList_GET_SIZE(samples), i, r;
    long long ts;
    if (collector_run_bounds(args, total, &i, &ts) < 0)
        return NULL;
    int check_hist = PyDict_GET_SIZE(hist) > 0; /* hist only changes between commits */
    PyObject *same_ts = NULL, *ref;
    double value;

    for (; i < total; i++) {
        if (!collector_take_sample(PyList_GET_ITEM(samples, i), ts, &same_ts, &ref, &r, &value))
            break;
        if (r >= PyList_GET_SIZE(label_sets))
            break;
        if (check_hist) {
            int found = PyDict_Contains(hist, ref);
            if (found < 0)
                return NULL;
            if (found)
                break;
        }
        PyObject *lset = PyList_GET_ITEM(label_sets, r);
        if (!PyTuple_CheckExact(lset)) /* None: a released ref */
            break;
        Py_ssize_t npairs = PyTuple_GET_SIZE(lset), j;
        if (npairs > MAX_PAIRS)
            break;
        /* The label fields, into the scratch buffer (their length comes first in the
         * TimeSeries, so they are written before it is known). */
        char *q = scratch;
        for (j = 0; j < npairs; j++) {
            PyObject *pair = PyTuple_GET_ITEM(lset, j);
            if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2)
                break;
            PyObject *lname = PyTuple_GET_ITEM(pair, 0), *lvalue = PyTuple_GET_ITEM(pair, 1);
            if (!PyUnicode_CheckExact(lname) || !PyUnicode_CheckExact(lvalue))
                break;
            Py_ssize_t nsize, vsize;
            const char *ndata = utf8_of(lname, &nsize);
            const char *vdata = utf8_of(lvalue, &vsize);
            if (ndata == NULL || vdata == NULL)
                break;
            Py_ssize_t body = field_len(nsize) + field_len(vsize);
            if (body > SCRATCH - 16 - (q - scratch))
                break; /* a label set past the scratch buffer: Python encodes it */
            *q++ = 0x0A;
            q = put_varint(q, (size_t)body);
            q = put_field(q, 0x0A, ndata, nsize);
            q = put_field(q, 0x12, vdata, vsize);
        }
        if (j < npairs)
            break;
        Py_ssize_t labels_len = q - scratch;
        /* Then the TimeSeries field up to the timestamp field, which the run's join adds:
         * Sample tag, its length, and for a non-zero value the value tag and 8 bytes. */
        int zero = value == 0.0; /* -0.0 too; NaN is not zero (proto3 omits only zeros) */
        Py_ssize_t sample_len = zero ? 2 + 7 : 2 + 9 + 7;
        size_t series_len = (size_t)(labels_len + sample_len);
        Py_ssize_t out_len = 1 + varint_len(series_len) + labels_len + (zero ? 2 : 3 + 8);
        PyObject *encoded = PyBytes_FromStringAndSize(NULL, out_len);
        if (encoded == NULL)
            return NULL;
        char *p = PyBytes_AS_STRING(encoded);
        *p++ = 0x0A;
        p = put_varint(p, series_len);
        memcpy(p, scratch, (size_t)labels_len);
        p += labels_len;
        *p++ = 0x12;
        if (zero) {
            *p++ = 0x07;
        }
        else {
            *p++ = 0x10;
            *p++ = 0x09;
            if (PyFloat_Pack8(value, p, 1) < 0) {
                Py_DECREF(encoded);
                return NULL;
            }
        }
        PyObject *run = PyList_GET_ITEM(runs, r % nruns);
        int failed = !PyList_CheckExact(run) || PyList_Append(run, encoded) < 0;
        Py_DECREF(encoded);
        if (failed) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "encode_labelled: runs must hold lists");
            return NULL;
        }
    }
    return PyLong_FromSsize_t(i);
}
