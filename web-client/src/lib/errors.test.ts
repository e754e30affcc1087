import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { describeError, fieldErrorsOf } from './errors';

describe('fieldErrorsOf', () => {
  it('files an INVALID_ARGUMENT message under the field it starts with', () => {
    const err = (m: string) => new ConnectError(m, Code.InvalidArgument);
    expect(fieldErrorsOf(err('username: must be 1 to 64 characters'))).toEqual({
      username: 'must be 1 to 64 characters',
    });
    expect(fieldErrorsOf(err("tests[2].name: contains '/'"))).toEqual({ 'tests[2].name': "contains '/'" });
    expect(fieldErrorsOf(err('tests: at least one test is required'))).toEqual({
      tests: 'at least one test is required',
    });
    expect(fieldErrorsOf(err('timeout_seconds: must be at most 3600 seconds'))).toEqual({
      timeout_seconds: 'must be at most 3600 seconds',
    });
  });

  it('reads workspace field paths, map keys quoted or not', () => {
    const err = (m: string) => new ConnectError(m, Code.InvalidArgument);
    expect(fieldErrorsOf(err('workspace.digest.hash: must be 64 lowercase hex characters'))).toEqual({
      'workspace.digest.hash': 'must be 64 lowercase hex characters',
    });
    expect(fieldErrorsOf(err('env["1X"]: not a variable name'))).toEqual({ 'env["1X"]': 'not a variable name' });
    expect(fieldErrorsOf(err('env.PATH: is the runner\'s own'))).toEqual({ 'env.PATH': "is the runner's own" });
  });

  it('keeps messages without a field path as a form-level error', () => {
    expect(fieldErrorsOf(new ConnectError('request too large', Code.InvalidArgument))).toEqual({
      '': 'request too large',
    });
    expect(fieldErrorsOf(new ConnectError('nope', Code.Unauthenticated))['']).toMatch(/^API token required/);
  });
});

describe('describeError', () => {
  it('says that an API token is required for UNAUTHENTICATED', () => {
    expect(describeError(new ConnectError('missing token', Code.Unauthenticated))).toMatch(/^API token required/);
  });

  it('uses the raw server message otherwise', () => {
    expect(describeError(new ConnectError('Testrun 4 already ended', Code.FailedPrecondition))).toBe(
      'Testrun 4 already ended',
    );
  });
});
