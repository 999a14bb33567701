# Cython declarations for flow.py, compiled with it (router/compiled.py): the request path's
# modules cimport ReadGate and reach its fields as C struct members.

cdef class ReadGate:
    cdef public object transport
    cdef public int reasons

    cpdef pause(self, int reason)
    cpdef resume(self, int reason)
