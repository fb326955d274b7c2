/* Undefine what the rooms (xent_rooms.h) defined for one element type, before the next. */
#undef XENT_CHUNK
#undef XENT_LANES
#undef XENT_MANT_BITS
#undef XENT_EXP_BIAS
#undef XENT_ROUND_MAGIC
#undef XENT_LOG2E
#undef XENT_LN2_HI
#undef XENT_LN2_LO
#undef XENT_LN2
#undef XENT_EXP_UNDER
#undef XENT_EXP_CLAMP
#undef XENT_EXP_OVER
#undef XENT_T_MAX
#undef XENT_T_MIN
#undef XENT_SUBNORMAL_SCALE
#undef XENT_SUBNORMAL_SCALE_EXP
#undef XENT_SQRT2
