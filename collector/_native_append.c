/* collector._native, second part: the scrape cache's steady-state append (bulk_append) and the
 * remote-write encoder's commit loop (encode_run). The module itself, and the parser's
 * steady-state value pass, are in _native.c; _native.h declares what this file gives it.
 *
 * Both loops handle only the exact types the pipeline makes and leave everything else to their
 * Python references (collector/scrape/cache.py `_py_bulk_append`, collector/remote/encoder.py
 * `BatchEncoder._encode_run`); tests/scrape/test_cache_native.py and
 * tests/remote/test_encoder_native.py hold them to the same results.
 */

#include "_native.h"

#include <string.h>

/* ------------------------------------------------------------------ encode_run
 *
 * The remote-write encoder's commit loop (collector/remote/encoder.py, BatchEncoder.commit) for
 * the samples that need no decision: a series whose encoding is cached in the dict of its
 * form. Same rules, same bytes, in the same order as the Python loop; it stops at the first
 * sample it leaves to Python (another timestamp, a miss, anything not of the exact types the
 * encoder stores) and says where. */

const char collector_encode_run_doc[] = PyDoc_STR(
"encode_run(samples, start, ts, values, zeros, runs, /) -> (stop, dropped)\n"
"\n"
"From ``samples[start]`` on, while a sample is ``(ref, value, ts)`` with this ``ts`` and its\n"
"series is cached (``values`` and ``zeros`` are lists of one length indexed by ref, None where\n"
"nothing is cached): a non-zero value's last encoding ``values[ref]`` when its last 8 bytes\n"
"are the packed value, else that encoding with them replaced (stored back in ``values``), or\n"
"a zero's ``zeros[ref]``, appended to ``runs[ref % len(runs)]``; an empty entry (a dropped\n"
"series) is counted instead. Returns the index of the first sample not handled and the count\n"
"of dropped ones.");

PyObject *
collector_encode_run(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "encode_run expected 6 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *samples = args[0], *values = args[3], *zeros = args[4], *runs = args[5];
    if (!PyList_CheckExact(samples) || !PyList_CheckExact(values) || !PyList_CheckExact(zeros)
        || PyList_GET_SIZE(values) != PyList_GET_SIZE(zeros) || !PyList_CheckExact(runs)
        || PyList_GET_SIZE(runs) == 0) {
        PyErr_SetString(PyExc_TypeError, "encode_run: samples list, two lists of one length "
                                         "and a non-empty runs list expected");
        return NULL;
    }
    Py_ssize_t nruns = PyList_GET_SIZE(runs);
    Py_ssize_t total = PyList_GET_SIZE(samples);
    Py_ssize_t dropped = 0, i, r;
    long long ts;
    if (collector_run_bounds(args, total, &i, &ts) < 0)
        return NULL;
    PyObject *same_ts = NULL, *ref;
    double value;

    for (; i < total; i++) {
        if (!collector_take_sample(PyList_GET_ITEM(samples, i), ts, &same_ts, &ref, &r, &value))
            break;
        /* A ref past the lists is a miss (they grow in Python, `BatchEncoder._grow`). */
        if (r >= PyList_GET_SIZE(values) || r >= PyList_GET_SIZE(zeros))
            break;
        PyObject *run = PyList_GET_ITEM(runs, r % nruns);
        if (!PyList_CheckExact(run))
            break;

        if (value != 0.0) { /* NaN too, as Python's truth test of a float */
            PyObject *entry = PyList_GET_ITEM(values, r);
            if (!PyBytes_CheckExact(entry)) /* None: not cached in this form */
                break;
            Py_ssize_t len = PyBytes_GET_SIZE(entry);
            if (len == 0) {
                dropped++;
                continue;
            }
            if (len < 8)
                break;
            char packed[8];
            if (PyFloat_Pack8(value, packed, 1) < 0)
                return NULL;
            const char *last = PyBytes_AS_STRING(entry);
            if (memcmp(last + len - 8, packed, 8) == 0) { /* unchanged, bit for bit */
                if (PyList_Append(run, entry) < 0)
                    return NULL;
                continue;
            }
            PyObject *encoded = PyBytes_FromStringAndSize(NULL, len);
            if (encoded == NULL)
                return NULL;
            memcpy(PyBytes_AS_STRING(encoded), last, (size_t)(len - 8));
            memcpy(PyBytes_AS_STRING(encoded) + len - 8, packed, 8);
            if (PyList_Append(run, encoded) < 0) {
                Py_DECREF(encoded);
                return NULL;
            }
            /* The list takes our reference to `encoded` and gives up its one to `entry`
             * (borrowed from it: not used after this). */
            PyList_SET_ITEM(values, r, encoded);
            Py_DECREF(entry);
            continue;
        }
        PyObject *encoded = PyList_GET_ITEM(zeros, r);
        if (!PyBytes_CheckExact(encoded))
            break;
        if (PyBytes_GET_SIZE(encoded) == 0) {
            dropped++;
            continue;
        }
        if (PyList_Append(run, encoded) < 0)
            return NULL;
    }
    return Py_BuildValue("(nn)", i, dropped);
}

/* ------------------------------------------------------------------ bulk_append
 *
 * The scrape cache's steady-state append (collector/scrape/cache.py, ScrapeCache.append's bulk
 * branch, `_bulk_append` the reference): every series of the scrape is cached and kept, so the
 * per-sample rules reduce to the out-of-order check against each series' last timestamp, then
 * the timestamps' update and one (ref, value, ts) tuple per sample. */

const char collector_bulk_append_doc[] = PyDoc_STR(
"bulk_append(refs, values, now, last, batch, /) -> bool\n"
"\n"
"False, changing nothing, when a ref of ``refs`` has ``last[ref] >= now``; else sets\n"
"``last[ref] = now`` for every ref, appends ``(ref, value, now)`` to ``batch`` for every pair\n"
"of ``zip(refs, values)`` and returns True. ``refs`` holds ints, each an index of the list\n"
"``last`` (IndexError otherwise), whose items are ints.");

/* The index ``ref`` names in ``last``, or -1 with an exception set. */
static Py_ssize_t
last_index(PyObject *ref, PyObject *last)
{
    if (!PyLong_CheckExact(ref)) {
        PyErr_SetString(PyExc_TypeError, "bulk_append: refs must be ints");
        return -1;
    }
    Py_ssize_t r = PyLong_AsSsize_t(ref);
    if (r == -1 && PyErr_Occurred())
        return -1;
    if (r < 0 || r >= PyList_GET_SIZE(last)) {
        PyErr_SetString(PyExc_IndexError, "bulk_append: a ref past the last timestamps");
        return -1;
    }
    return r;
}

PyObject *
collector_bulk_append(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "bulk_append expected 5 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *refs = args[0], *values = args[1], *now = args[2], *last = args[3];
    PyObject *batch = args[4];
    if (!PyList_CheckExact(refs) || !PyList_CheckExact(values) || !PyLong_CheckExact(now)
        || !PyList_CheckExact(last) || !PyList_CheckExact(batch)) {
        PyErr_SetString(PyExc_TypeError,
                        "bulk_append(refs: list, values: list, now: int, last: list, batch: list)");
        return NULL;
    }
    /* Only exact ints are compared, so no Python code runs while the lists are walked: their
     * sizes cannot change under this loop. */
    Py_ssize_t n = PyList_GET_SIZE(refs);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t r = last_index(PyList_GET_ITEM(refs, i), last);
        if (r < 0)
            return NULL;
        PyObject *lt = PyList_GET_ITEM(last, r);
        if (!PyLong_CheckExact(lt)) {
            PyErr_SetString(PyExc_TypeError, "bulk_append: last timestamps must be ints");
            return NULL;
        }
        int older = PyObject_RichCompareBool(lt, now, Py_LT);
        if (older < 0)
            return NULL;
        if (!older)
            Py_RETURN_FALSE;
    }
    /* Allocating a tuple may run the garbage collector, and so finalizers: the sizes are
     * read again at every step rather than trusted from before. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(refs); i++) {
        PyObject *ref = PyList_GET_ITEM(refs, i);
        Py_ssize_t r = last_index(ref, last);
        if (r < 0)
            return NULL;
        Py_INCREF(now);
        PyObject *old = PyList_GET_ITEM(last, r);
        PyList_SET_ITEM(last, r, now);
        Py_DECREF(old); /* an int: no finalizer */
        if (i < PyList_GET_SIZE(values)) {
            PyObject *sample = PyTuple_Pack(3, ref, PyList_GET_ITEM(values, i), now);
            if (sample == NULL)
                return NULL;
            int rc = PyList_Append(batch, sample);
            Py_DECREF(sample);
            if (rc < 0)
                return NULL;
        }
    }
    Py_RETURN_TRUE;
}
