// One error type for bad data: it names the file (or data set) and what is wrong with it.
export class DataError extends Error {
  constructor(
    readonly source: string,
    readonly problem: string,
  ) {
    super(`${source}: ${problem}`);
    this.name = 'DataError';
  }
}
