#ifndef MODELD_CSYSTEMD_SHIM_H
#define MODELD_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#endif
