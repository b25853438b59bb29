// The body of `care-worker serve`: metrics endpoint, signal handling
// (SIGTERM/SIGINT: stop leasing, stop the running job at its next layer
// boundary and release it), and the worker loop around a JobRunner.
#ifndef CARE_WORKER_SERVICE_SERVE_H_
#define CARE_WORKER_SERVICE_SERVE_H_

#include "service/job_runner.h"
#include "service/options.h"

namespace care::worker {

// Blocks SIGTERM/SIGINT in the calling thread (call before any other thread
// starts, so every thread inherits the mask) and serves. Prints
// "serving worker=ID metrics=HOST:PORT" on stdout once ready. Returns the
// process exit status: 0 clean stop, 1 a fatal error (printed on stderr).
int Serve(const ServiceOptions& options, JobRunner& runner);

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_SERVE_H_
