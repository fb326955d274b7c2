from xent._kernel_api cimport xent_kernel_table

# The one kernel table (filled at import of xent._table, refilled in place by set_isa).
cdef const xent_kernel_table *kernel_table() noexcept nogil
