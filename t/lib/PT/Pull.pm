package PT::Pull;

# Helpers for the data-plane tests (pulling through the cache): the nginx
# configuration with the registry and a cache-status access log, setting up
# a pull-through distribution, running skopeo and podman, reading blobs
# over a raw socket (slowly, partly, or aborting), looking into the store,
# polling, and checking OCI error answers.
#
#   my $t = PT::Nginx->new(conf => cache_conf(registry => 'proxy_read_timeout 2s;'));
#   $t->start;
#   setup_cache($t, $reg->url);                 # base_path "cache"
#   my ($rc, $out) = skopeo('copy', '--src-tls-verify=false',
#                           'docker://' . cache_ref($t, 'library/hello:1.0'),
#                           "dir:$dir");
#   my @log = cache_log($t);      # ({ method, uri, status, bytes, cache }, ...)
#   wait_for(sub { -f blob_file($t, $digest) }, 10, 'blob stored');

use strict;
use warnings;

use Exporter qw(import);
use Test::More ();
use Digest::SHA;
use File::Find ();
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes qw(sleep time);

use PT::Pulp qw($REMOTES $DISTS dump_json create_remote create_dist);
use PT::Util qw(slurp open_cmd);

our @EXPORT = qw(
    cache_conf setup_cache cache_ref cache_log cache_log_mark wait_cache_log
    wait_for run_cmd skopeo podman podman_cmd
    blob_file store_files tmp_files
    vm_kib stream_get http_get logged_request
    is_oci_error file_digest sha256_digest
    bg_stream_get bg_result
);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;


# nginx.conf: the registry on /v2/, the admin API on /pulp/api/v3/, and an
# access log (cache.log in the test directory) with the cache status.
# Options: http, server, registry (directives in the /v2/ location),
# registry_args (after pullthrough_registry, e.g. " default=hub"), listen (parameters of the listen directive, e.g. "sndbuf=64k"), workers,
# store_args (after the store path, e.g. " map_size=1m"),
# main.
sub cache_conf {
    my (%o) = @_;

    $o{$_} //= '' for qw(http server registry registry_args main listen
                         store_args);
    my $workers = $o{workers} ? "worker_processes $o{workers};\n" : '';

    return <<"EOF";
$workers$o{main}
http {
    sendfile on;
    pullthrough_store %%STORE%%$o{store_args};

    log_format cache '\$request_method \$request_uri \$status '
                     '\$body_bytes_sent \$pullthrough_cache_status '
                     'pid=\$pid';
    access_log %%TESTDIR%%/cache.log cache;

    $o{http}

    server {
        listen 127.0.0.1:%%PORT%% $o{listen};
        $o{server}

        location /v2/ {
            pullthrough_registry$o{registry_args};
            $o{registry}
        }

        location /pulp/api/v3/ {
            pullthrough_admin;
        }
    }
}
EOF
}


# creates a remote for $url and a pull-through distribution on it; returns
# the distribution (with ->{remote_obj} the remote)
sub setup_cache {
    my ($t, $url, %o) = @_;

    my $base = $o{base_path} // 'cache';
    my $name = $o{name} // "pt-$base";
    $name =~ s{/}{-}g;

    my $remote = create_remote($t, name => $name, url => $url,
                               %{ $o{remote} || {} });
    my $dist = create_dist($t, name => $name, base_path => $base,
                           remote => $remote->{pulp_href},
                           %{ $o{dist} || {} });
    $dist->{remote_obj} = $remote;
    return $dist;
}


# 127.0.0.1:PORT/<base_path>/<ref>
sub cache_ref {
    my ($t, $ref, $base) = @_;
    return '127.0.0.1:' . $t->port . '/' . ($base // 'cache') . "/$ref";
}


# the lines of cache.log from line $from (default 0):
# ({ method, uri, path, status, bytes, cache, pid }, ...)
sub cache_log {
    my ($t, $from) = @_;
    my @lines = split /\n/, slurp($t->dir . '/cache.log');
    my @r;
    for my $l (@lines[ ($from // 0) .. $#lines ]) {
        my ($m, $u, $s, $b, $c, $pid) =
            $l =~ /^(\S+) (\S+) (\d+) (\d+) (\S+) pid=(\d+)$/ or next;
        my ($path) = split /\?/, $u;
        push @r, { method => $m, uri => $u, path => $path, status => $s + 0,
                   bytes => $b + 0, cache => $c, pid => $pid, line => $l };
    }
    return @r;
}

# the number of lines in cache.log: cache_log($t, $mark) gives what follows.
# nginx logs a request once it has ended, which can be just after its client
# has the last byte: so a request of its own (GET /v2/?pt-sync=N) goes first
# and its line is waited for. With one worker, every request that ended
# before it is then logged, above the mark.
my $SYNC = 0;

sub cache_log_mark {
    my ($t) = @_;
    my $file = $t->dir . '/cache.log';
    my $tag = 'pt-sync=' . ++$SYNC . "-$$";
    $t->get("/v2/?$tag");
    wait_for(sub { index(slurp($file), "/v2/?$tag ") >= 0 }, 10)
        or die "cache.log: no line for GET /v2/?$tag\n";
    my $n = () = slurp($file) =~ /\n/g;
    return $n;
}

# waits until a line after $mark matches (method, path regexp); returns it.
# nginx logs a request once it has ended, which can be just after the
# client has its last byte
sub wait_cache_log {
    my ($t, $mark, $method, $re, $timeout) = @_;
    my $found;
    wait_for(sub {
        ($found) = grep { $_->{method} eq $method && $_->{path} =~ $re }
                   cache_log($t, $mark);
        $found;
    }, $timeout // 10);
    return $found;
}


# polls $code every 20 ms until it returns true (returned) or $timeout
# seconds pass (returns false)
sub wait_for {
    my ($code, $timeout, $what) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        my $v = $code->();
        return $v if $v;
        last if time > $deadline;
        sleep 0.02;
    }
    Test::More::diag("timed out waiting for $what") if defined $what;
    return;
}


# runs a command, stderr with stdout; returns ($exit_status, $output).
# A hash reference first holds options: timeout => SECONDS (default
# $CMD_TIMEOUT): the command is killed after that (status 124, as timeout(1)
# says, and the output ends with a line saying so)
our $CMD_TIMEOUT = 60;

sub run_cmd {
    my %o = ref $_[0] eq 'HASH' ? %{ shift @_ } : ();
    my (@cmd) = @_;
    my $timeout = $o{timeout} // $CMD_TIMEOUT;

    my ($pid, $fh) = open_cmd(@cmd);

    my $out = '';
    my $timed_out = 0;
    my $deadline = time + $timeout;
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            $timed_out = 1;
            kill 'KILL', $pid;
            last;
        }
        my $rin = '';
        vec($rin, fileno($fh), 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, $left);
        next unless $n && $n > 0;
        my $r = sysread($fh, my $buf, 65536);
        last unless $r;
        $out .= $buf;
    }
    close $fh;
    my $status = $? >> 8 | ($? & 127 ? 128 + ($? & 127) : 0);

    if ($timed_out) {
        $out .= "\n[killed after $timeout s: @cmd]\n";
        return (124, $out);
    }
    return ($status, $out);
}

# skopeo with an insecure policy, no retries; an options hash may come
# first (see run_cmd)
sub skopeo {
    my $o = ref $_[0] eq 'HASH' ? shift @_ : {};
    my (@args) = @_;
    return run_cmd($o, 'skopeo', '--insecure-policy', @args);
}

# podman with its own vfs storage under $dir
sub podman_cmd {
    my ($dir) = @_;
    return ('podman', '--root', "$dir/root", '--runroot', "$dir/run",
            '--tmpdir', "$dir/tmp", '--storage-driver', 'vfs',
            '--events-backend', 'none', '--cgroup-manager', 'cgroupfs');
}

sub podman {
    my $o = ref $_[0] eq 'HASH' ? shift @_ : {};
    my ($dir, @args) = @_;
    return run_cmd($o, podman_cmd($dir), @args);
}


# the store

# STORE/blobs/<alg>/<xx>/<hex> of a digest
sub blob_file {
    my ($t, $digest) = @_;
    my ($alg, $hex) = $digest =~ /^(\w+):([0-9a-f]+)$/
        or die "bad digest $digest";
    return $t->store . "/blobs/$alg/" . substr($hex, 0, 2) . "/$hex";
}

# every file under STORE/blobs, relative to it, sorted
sub store_files {
    my ($t) = @_;
    my $root = $t->store . '/blobs';
    my @f;
    return () unless -d $root;
    File::Find::find({ no_chdir => 1, wanted => sub {
        push @f, substr($File::Find::name, length($root) + 1) if -f $_;
    } }, $root);
    return sort @f;
}

# the names of the files in STORE/tmp, sorted
sub tmp_files {
    my ($t) = @_;
    opendir my $dh, $t->store . '/tmp' or return ();
    my @f = sort grep { !/^\.\.?$/ } readdir $dh;
    closedir $dh;
    return @f;
}


# why a worker's memory cannot be measured here, or undef: under
# AddressSanitizer (PT_NGINX_PRELOAD) freed memory waits in its quarantine
# and shadow memory grows with every allocation
sub memory_unmeasurable {
    return ($ENV{PT_NGINX_PRELOAD} // '') =~ /asan/
        ? 'nginx runs under AddressSanitizer: its memory is not the module\'s'
        : undef;
}


# VmRSS (or another Vm* field) of a process, in KiB
sub vm_kib {
    my ($pid, $field) = @_;
    $field //= 'VmRSS';
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (<$fh>) {
        return $1 + 0 if /^\Q$field\E:\s+(\d+)\s+kB/;
    }
    return undef;
}


# digests

sub file_digest {
    my ($file, $alg) = @_;
    $alg //= 'sha256';
    my $bits = $alg =~ /(\d+)/ ? $1 : 256;
    return "sha$bits:" . Digest::SHA->new($bits)->addfile($file, 'b')->hexdigest;
}

sub sha256_digest {
    my ($bytes) = @_;
    return 'sha256:' . Digest::SHA::sha256_hex($bytes);
}


# A request over a raw socket whose body is read as it comes, hashed, not
# kept (unless keep => 1).
#   stream_get($t, PATH, method => 'GET', headers => {...},
#              abort_after => N     close the connection after N body bytes
#              chunk => N           bytes per read (default 64 KiB)
#              delay => SECONDS     sleep after each read (a slow client)
#              rcvbuf => N          SO_RCVBUF of the socket
#              on_read => sub { my ($bytes_so_far) = @_ }
#              keep => 1            keep the body in {content}
#              timeout => SECONDS   (default 60)
#              idle_timeout => SECONDS  give up when nothing comes for that
#                                   long (default: timeout))
# returns { status, headers (lowercase), length (body bytes read),
#   expected (Content-Length), complete (length == expected), sha256,
#   eof (the server closed), error (a read error or timeout), aborted,
#   seconds, content }
sub stream_get {
    my ($t, $path, %o) = @_;

    my $port = ref $t ? $t->port : $t;
    my $t0 = time;
    my $s = IO::Socket::INET->new(Proto => 'tcp', Timeout => 10)
        or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, $o{rcvbuf}) if $o{rcvbuf};
    my $addr = Socket::pack_sockaddr_in($port, Socket::inet_aton('127.0.0.1'));
    connect($s, $addr) or die "connect 127.0.0.1:$port: $!";
    binmode $s;

    my $method = $o{method} // 'GET';
    my $req = "$method $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n"
        . "Connection: close\r\nUser-Agent: pt-stream\r\n";
    for my $k (sort keys %{ $o{headers} || {} }) {
        $req .= "$k: $o{headers}{$k}\r\n";
    }
    $req .= "\r\n";
    syswrite($s, $req) == length $req or die "write: $!";

    my %res = (status => 599, headers => {}, length => 0, complete => 0,
               eof => 0, aborted => 0, error => undef, content => '');
    my $sha = Digest::SHA->new(256);
    my $timeout = $o{timeout} // 60;
    my $deadline = time + $timeout;
    my $idle = $o{idle_timeout};
    my $buf = '';

    # the head
    while ($buf !~ /\r\n\r\n/) {
        my $n = _read($s, \$buf, 65536, $deadline);
        if (!defined $n) { $res{error} = "head: $!"; last }
        if ($n == 0) { $res{eof} = 1; last }
    }

    if ($buf =~ s/\A(.*?)\r\n\r\n//s) {
        my ($status_line, @lines) = split /\r\n/, $1;
        ($res{status}) = $status_line =~ m{^HTTP/\d\.\d (\d{3})};
        for (@lines) {
            my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
            $res{headers}{ lc $k } = exists $res{headers}{ lc $k }
                ? "$res{headers}{lc $k}, $v" : $v;
        }
        $res{expected} = $res{headers}{'content-length'};

        my $body_expected = $method ne 'HEAD'
            && $res{status} != 304 && $res{status} != 204;
        my $want = $body_expected ? $res{expected} : 0;

        my $take = sub {
            my ($data) = @_;
            if (defined $o{abort_after}
                && $res{length} + length($data) > $o{abort_after})
            {
                $data = substr($data, 0, $o{abort_after} - $res{length});
            }
            $sha->add($data);
            $res{content} .= $data if $o{keep};
            $res{length} += length $data;
        };

        $take->($buf);
        $o{on_read}->($res{length}) if $o{on_read} && length $buf;
        $buf = '';

        while (!defined $want || $res{length} < $want) {
            if (defined $o{abort_after} && $res{length} >= $o{abort_after}) {
                $res{aborted} = 1;
                last;
            }
            my $until = $deadline;
            $until = time + $idle if $idle && time + $idle < $until;
            my $n = _read($s, \$buf, $o{chunk} || 65536, $until);
            if (!defined $n) { $res{error} = "body: $!"; last }
            if ($n == 0) { $res{eof} = 1; last }
            $take->($buf);
            $buf = '';
            $o{on_read}->($res{length}) if $o{on_read};
            sleep $o{delay} if $o{delay};
        }

        $res{complete} = defined $want && $res{length} == $want ? 1 : 0;
        $res{complete} = 0 if $res{aborted};
    }

    close $s;
    $res{sha256} = 'sha256:' . $sha->hexdigest;
    $res{seconds} = time - $t0;
    $res{json} = eval { $JSON->decode($res{content}) } if $o{keep};

    return \%res;
}


sub _read {
    my ($s, $bufref, $len, $deadline) = @_;
    my $left = $deadline - time;
    if ($left <= 0) { $! = POSIX::ETIMEDOUT(); return undef }
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    my $n = select(my $rout = $rin, undef, undef, $left);
    if (!$n) { $! = POSIX::ETIMEDOUT(); return undef }
    return sysread($s, $$bufref, $len, length $$bufref);
}


# stream_get in a child process: returns a handle for bg_result. Extra
# option: started => FILE, created once the first body bytes arrived (or
# the answer ended)
sub bg_stream_get {
    my ($t, $path, %o) = @_;

    my $dir = tempdir('pt-bg-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $started = delete $o{started};
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        my $mark = sub {
            return unless $started && !-e $started;
            if (open my $fh, '>', $started) { close $fh }
        };
        my $on_read = $o{on_read};
        my $r = eval {
            stream_get($t, $path, %o,
                       on_read => sub { $mark->(); $on_read->(@_) if $on_read });
        } || { status => 599, error => "$@" };
        $mark->();
        delete $r->{content} unless $o{keep};
        if (open my $fh, '>', "$dir/result.tmp") {
            print $fh $JSON->encode($r);
            close $fh;
            rename "$dir/result.tmp", "$dir/result";
        }
        POSIX::_exit(0);
    }

    return { pid => $pid, dir => $dir };
}

# waits for a bg_stream_get child (at most $timeout seconds, default 120)
# and returns its stream_get result
sub bg_result {
    my ($h, $timeout) = @_;
    my $deadline = time + ($timeout // 120);
    while (waitpid($h->{pid}, POSIX::WNOHANG()) == 0) {
        if (time > $deadline) {
            kill 'KILL', $h->{pid};
            waitpid($h->{pid}, 0);
            return { status => 599, error => 'bg_stream_get: no result in time' };
        }
        sleep 0.02;
    }
    my $data = slurp("$h->{dir}/result");
    return length $data ? $JSON->decode($data)
                        : { status => 599, error => 'bg_stream_get: no result' };
}


# a GET (or other method) through PT::Nginx::request, with the status as a
# number
sub http_get {
    my ($t, $path, %o) = @_;
    my $r = $t->request($o{method} // 'GET', $path, %o);
    $r->{status} += 0 if $r->{status} =~ /^\d+$/;
    return $r;
}


# a request whose cache.log line is waited for: the answer (as request()
# gives it) with {cache} (its $pullthrough_cache_status), {digest}
# (Docker-Content-Digest) and {seconds} (until the answer). The path gets a
# query of its own (?q=N) to find its line.
my $LOGGED = 0;

sub logged_request {
    my ($t, $method, $path, %o) = @_;
    my $q = 'q=' . ++$LOGGED . "-$$";
    my $t0 = time;
    my $r = $t->request($method, "$path?$q", %o);
    $r->{seconds} = time - $t0;
    my $line;
    wait_for(sub {
        ($line) = grep { $_->{uri} =~ /[?]\Q$q\E$/ } cache_log($t);
        $line;
    }, 10, "the log line of $method $path");
    $r->{cache} = $line ? $line->{cache} : '';
    $r->{digest} = $r->{headers}{'docker-content-digest'} // '';
    return $r;
}


# one test: an OCI error answer: $status, JSON, {"errors":[{"code":$code,
# "message": a string, "detail": present}]}, the API version header
sub is_oci_error {
    my ($r, $status, $code, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    my $j = $r->{json};
    my $e = ref $j eq 'HASH' && ref $j->{errors} eq 'ARRAY'
        ? $j->{errors}[0] : undef;

    my $ok = $r->{status} == $status
        && ($r->{headers}{'content-type'} // '') =~ m{^application/json\b}
        && ref $e eq 'HASH'
        && @{ $j->{errors} } == 1
        && ($e->{code} // '') eq $code
        && defined $e->{message} && !ref $e->{message}
        && length $e->{message}
        && exists $e->{detail}
        && join(',', sort keys %$e) eq 'code,detail,message'
        && ($r->{headers}{'docker-distribution-api-version'} // '')
           eq 'registry/2.0';

    Test::More::ok($ok, $name)
        or Test::More::diag("got $r->{status} "
            . ($r->{headers}{'content-type'} // '-') . " "
            . ($r->{content} // '') . "\nwant $status $code");
    return $ok;
}


1;
