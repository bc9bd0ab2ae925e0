package PT::Tinyproxy;

# A real forward proxy for the upstream-proxy tests: Debian's tinyproxy
# (1.11.x) on a free loopback port, with a config of its own.
#
#   my $px = PT::Tinyproxy->new->start;
#   my $px = PT::Tinyproxy->new(dir => $dir, auth => [ 'alice', 'pw' ])->start;
#   $px->url;              # http://127.0.0.1:PORT (no credentials in it)
#   $px->reset_requests;   # forget what was proxied so far
#   ... requests through the proxy ...
#   my @r = $px->requests; # ({ method => 'GET', url => 'http://h:p/v2/' },
#                          #  { method => 'CONNECT', url => 'h:443' }, ...)
#   $px->stop;             # also done in DESTROY and in an END block
#
# new(%opt):
#   dir    => DIR          working directory (default: a new temp dir, kept
#                          with PT_KEEP=1): tinyproxy.conf, tinyproxy.log
#                          (its log), tinyproxy.out (its stdout and stderr)
#   port   => N            port (default: a free one, changed if taken)
#   auth   => [USER, PASSWORD]
#                          BasicAuth: a request without Proxy-Authorization
#                          gets 407 (Proxy-Authenticate: Basic
#                          realm="Tinyproxy"); one with other credentials
#                          gets 401 (tinyproxy's choice, not 407). tinyproxy
#                          takes [-A-Za-z0-9._] only, in both.
#   config => STRING       extra tinyproxy.conf lines
#                          (e.g. "ConnectPort 443\n")
#
# The config: Listen 127.0.0.1, Allow 127.0.0.1, no ConnectPort (CONNECT to
# any port), LogLevel Connect (every connection and request line, notices,
# errors), no PidFile, and User/Group the ones the test runs as: tinyproxy
# started as root changes to User/Group after binding (as root without a
# User it warns and stays root), so root stays root and can write the log
# in dir. tinyproxy runs in the foreground (-d) as a child of the test, a
# PT::Child: a watcher process stops it when the test is killed.
#
# The log: tinyproxy logs the request line of every request when it has
# read it, before it answers or connects anywhere, also for requests it
# then refuses (407, 401, 403, 500 for a name that does not resolve...);
# it logs no status. A client that got its answer finds its request in
# requests(). Lines longer than about 800 bytes are cut by tinyproxy: such
# a request has no protocol and truncated => 1.
#
# Tests run need_tools('tinyproxy') first.
#
# Environment: PT_TINYPROXY_BIN (default /usr/bin/tinyproxy).

use strict;
use warnings;

use Carp qw(croak);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

use parent 'PT::Child';
use PT::Util qw(slurp spew free_port match_requests missing_tools
                declare_tool);

our $BIN = $ENV{PT_TINYPROXY_BIN} || '/usr/bin/tinyproxy';
declare_tool('tinyproxy', 'tinyproxy', $BIN);
our $TIMEOUT = 10;      # seconds to wait for tinyproxy to start or stop


sub new {
    my ($class, %opt) = @_;

    my %known = map { $_ => 1 } qw(dir port auth config);
    my @bad = grep { !$known{$_} } sort keys %opt;
    croak "PT::Tinyproxy->new: unknown option(s) @bad" if @bad;

    # tests skip with need_tools('tinyproxy'): this is a safety net
    if (my $why = missing_tools('tinyproxy')) {
        croak "PT::Tinyproxy: $why; set PT_TINYPROXY_BIN";
    }

    if (my $cred = $opt{auth}) {
        croak "PT::Tinyproxy->new: auth is [USER, PASSWORD]"
            unless ref $cred eq 'ARRAY' && @$cred == 2;
        for (@$cred) {
            croak "PT::Tinyproxy->new: tinyproxy's BasicAuth takes "
                . "[-A-Za-z0-9._] only, not '" . ($_ // 'undef') . "'"
                unless defined $_ && /^[-A-Za-z0-9._]+$/;
        }
    }

    my $self = bless {
        dir => $opt{dir} || tempdir('pt-tinyproxy-XXXXXXXX', TMPDIR => 1,
                                    CLEANUP => !$ENV{PT_KEEP}),
        port => $opt{port},
        fixed_port => defined $opt{port},
        auth => $opt{auth} && [ @{ $opt{auth} } ],
        extra => $opt{config} // '',
        pid => undef,
        seen => 0,         # log lines hidden by reset_requests
    }, $class;

    croak "PT::Tinyproxy->new: no directory $self->{dir}"
        unless -d $self->{dir};
    $self->{port} ||= free_port();
    Test::More::diag("tinyproxy directory: $self->{dir}")
        if $ENV{PT_KEEP} && Test::More->can('diag');

    return $self->_track;
}


# accessors

sub dir { $_[0]{dir} }
sub port { $_[0]{port} }
sub name { 'tinyproxy' }
sub timeout { $TIMEOUT }
sub host { '127.0.0.1:' . $_[0]{port} }
sub url { 'http://' . $_[0]->host }
sub config_file { "$_[0]{dir}/tinyproxy.conf" }
sub log_file { "$_[0]{dir}/tinyproxy.log" }
sub out_file { "$_[0]{dir}/tinyproxy.out" }
sub log_text { slurp($_[0]->log_file) }

# (USER, PASSWORD), or () without auth
sub credentials { $_[0]{auth} ? @{ $_[0]{auth} } : () }


sub write_config {
    my ($self) = @_;

    my $log = $self->log_file;
    croak "PT::Tinyproxy: tinyproxy cannot take a log path with '\"': $log"
        if $log =~ /"/;

    my $conf = join '', map { "$_\n" }
        'User ' . $>,
        'Group ' . (split / /, $))[0],
        'Port ' . $self->{port},
        'Listen 127.0.0.1',
        'Timeout 600',
        qq(LogFile "$log"),
        'LogLevel Connect',
        'MaxClients 100',
        'Allow 127.0.0.1',
        ($self->{auth} ? "BasicAuth @{ $self->{auth} }" : ());
    $conf .= $self->{extra};

    spew($self->config_file, $conf);
}


# starts tinyproxy and returns once it has accepted a connection (its log
# says so); dies with its log if it exits or does not accept in $TIMEOUT s
sub start {
    my ($self) = @_;

    croak "tinyproxy is already running" if $self->{pid};

    for my $try (1 .. 3) {
        $self->write_config;
        my $mark = length $self->log_text;
        my $out_mark = -s $self->out_file || 0;

        $self->_spawn(sub {
            open STDOUT, '>>', $self->out_file;
            open STDERR, '>&', \*STDOUT;
        }, $BIN, '-d', '-c', $self->config_file);

        return $self if $self->_wait_ready($mark);

        # another process took the port between free_port() and the bind
        # (tinyproxy says so on stderr)
        my $out = substr($self->log_text, $mark)
            . substr(slurp($self->out_file), $out_mark);
        last if $self->{fixed_port}
            || $out !~ /Could not create listening sockets/;
        $self->{port} = free_port();
    }

    die "tinyproxy failed to start:\n" . $self->log_text
        . slurp($self->out_file);
}


# Ready when tinyproxy itself accepted a connection: connect, then wait for
# its "Connect (file descriptor N): 127.0.0.1" line after $mark (a port
# that only accepts could still be another process's, or tinyproxy's
# before its main loop). The probe then closes without a request: tinyproxy
# logs an error for it, and no request line.
sub _wait_ready {
    my ($self, $mark) = @_;

    my $deadline = time + $TIMEOUT;

    while (time < $deadline) {
        return 0 if $self->_exited;

        my $s = IO::Socket::INET->new(PeerAddr => $self->host,
                                      Proto => 'tcp', Timeout => 0.5);
        if ($s) {
            my $until = time + 2;
            while (time < $until) {
                if (substr($self->log_text, $mark)
                    =~ /\]: Connect \(file descriptor \d+\): 127\.0\.0\.1$/m)
                {
                    close $s;
                    return 1;
                }
                return 0 if $self->_exited;
                sleep 0.01;
            }
            close $s;
        }

        sleep 0.02;
    }

    $self->_kill;
    die "tinyproxy did not start in $TIMEOUT s:\n" . $self->log_text
        . slurp($self->out_file);
}


# the request log

# ({ method, url, protocol, host, path, truncated, time, fd, line }, ...)
# the requests tinyproxy read since start (or the last reset_requests), in
# its order. url is the request target as sent: the absolute URL of a plain
# http request, host:port for CONNECT. host is host:port (from the URL, the
# port only when the URL has one); path is the URL's path and query
# (undef for CONNECT).
sub requests {
    my ($self) = @_;
    my @lines = $self->_log_lines;
    return grep { defined }
        map { parse_log_line($_) } @lines[ $self->{seen} .. $#lines ];
}


# hides the requests read so far from requests()
sub reset_requests {
    my ($self) = @_;
    $self->{seen} = () = $self->_log_lines;
    return $self;
}


# the requests whose method matches $method (a string, or undef for any)
# and whose url matches $re (a regexp or string, or undef for any)
sub requests_matching {
    my ($self, $method, $re) = @_;
    return match_requests('url', $method, $re, $self->requests);
}


# the log's complete lines (one being written is left for the next call)
sub _log_lines {
    my ($self) = @_;
    my $log = $self->log_text;
    $log =~ s/[^\n]*\z//;
    return split /\n/, $log;
}


# CONNECT   Nov 27 10:32:58.907 [16597]: Request (file descriptor 5): GET http://127.0.0.1:41817/v2/ HTTP/1.1
# CONNECT   Nov 27 10:32:58.931 [16597]: Request (file descriptor 5): CONNECT 127.0.0.1:41817 HTTP/1.1
# -> a request, or undef for other lines
sub parse_log_line {
    my ($line) = @_;

    $line =~ m{^CONNECT\s+(\w{3}\s+\d+\s+[\d:.]+)\s+\[\d+\]: Request \(file descriptor (\d+)\): (\S+) (\S+)(?: (HTTP/\S+))?\s*$}
        or return undef;

    my $r = { time => $1, fd => $2 + 0, method => $3, url => $4,
              protocol => $5, truncated => defined $5 ? 0 : 1,
              line => $line };

    if ($r->{method} eq 'CONNECT') {
        $r->{host} = $r->{url};
        $r->{path} = undef;
    } elsif ($r->{url} =~ m{^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)(.*)\z}s) {
        $r->{host} = $1;
        $r->{path} = length $2 ? $2 : '/';
    } else {
        $r->{host} = undef;
        $r->{path} = $r->{url};
    }

    return $r;
}


1;
