// The one error type for a run directory that is missing, incomplete or damaged: the command
// line reports it as bad input (one line, exit 2), like a bad flag or a bad data file.
export class RunDirError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunDirError';
  }
}
