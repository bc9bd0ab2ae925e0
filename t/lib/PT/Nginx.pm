package PT::Nginx;

# A small test harness in the spirit of nginx-tests' Test::Nginx.
#
#   my $t = PT::Nginx->new(conf => <<'EOF');
#   worker_processes 2;
#   http {
#       pullthrough_store %%STORE%%;
#       server {
#           listen 127.0.0.1:%%PORT%%;
#           location /pulp/api/v3/ { pullthrough_admin; }
#       }
#   }
#   EOF
#   $t->start;
#   my $r = $t->post('/pulp/api/v3/...', { name => 'x' });
#   is($r->{status}, 201); is($r->{json}{name}, 'x');
#   $t->stop;        # one test: error.log has no [alert], [crit], [emerg]
#
# Each instance owns a temporary directory (%%TESTDIR%%) holding nginx.conf,
# error.log, access.log, the pid file, nginx's temp paths and, by default,
# the store (%%STORE%% = %%TESTDIR%%/store). %%PORT%%, %%PORT2%%, ... are
# free loopback ports. nginx runs in the foreground (daemon off) as a child
# of the test, with a master process; it is stopped in an END block even
# when the test dies. Set PT_KEEP=1 to keep the directories.
#
# Methods: start, try_start (false when nginx exits or its workers cannot
# start), test_conf (nginx -t: exit status and output), stop, restart, reload (nginx -s reload, returns once new workers
# replaced the old), set_conf, worker_pids, kill_worker (SIGKILL, waits for
# the replacement), kill_all (SIGKILL to master and workers: a crash),
# request/get/head/post/put/patch/delete (return { status, headers, content,
# json }), raw (bytes over a socket), error_log, access_log, allow_log
# (patterns of [alert]/[crit]/[emerg] lines a test expects), port, base_url,
# dir, store.
#
# Environment: PT_NGINX_PRELOAD (LD_PRELOAD for nginx only, e.g. libasan for
# a module built with -fsanitize=address), NGINX_BIN (nginx binary, default /usr/sbin/nginx), MODULE (the
# module's .so, default <repo>/build/nginx/objs/ngx_http_pullthrough_module.so).
# NGINX is removed from the environment (see $NGINX below).

use strict;
use warnings;

use Test::More;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use PT::Util qw(slurp spew free_port);   # tests call PT::Nginx::free_port

our $REPO = abs_path(dirname(__FILE__) . '/../../..');

# nginx reads the environment variable NGINX as sockets inherited from an
# old binary (and logs an [emerg] for anything else in it): the binary is
# NGINX_BIN (or NGINX when it holds a path), and NGINX is never passed on
our $NGINX = $ENV{NGINX_BIN}
    || (($ENV{NGINX} // '') =~ m{/} ? $ENV{NGINX} : undef)
    || '/usr/sbin/nginx';
delete $ENV{NGINX};

our $MODULE = $ENV{MODULE}
    || "$REPO/build/nginx/objs/ngx_http_pullthrough_module.so";

our $TIMEOUT = 15;      # seconds to wait for nginx to start, stop, reload

my @INSTANCES;          # every instance, for the END block
my $JSON = JSON::PP->new->utf8->allow_nonref->canonical;

# log lines that make a test fail unless a test allowed them
my $BAD_LOG = qr/\[(?:alert|crit|emerg)\]/;


sub new {
    my ($class, %args) = @_;

    die "PT::Nginx->new: conf is required\n" unless defined $args{conf};

    die "nginx binary $NGINX not found (set NGINX_BIN)\n" unless -x $NGINX;
    die "module $MODULE not found (set MODULE or run make build)\n"
        unless -f $MODULE;

    my $self = bless {
        conf      => $args{conf},
        dir       => $args{dir}
                     || tempdir('pt-test-XXXXXXXX', TMPDIR => 1,
                                CLEANUP => !$ENV{PT_KEEP}),
        allow_log => [ @{ $args{allow_log} || [] } ],
        ports     => {},
        pid       => undef,
    }, $class;

    $self->{store} = $args{store} || "$self->{dir}/store";
    diag("test directory: $self->{dir}") if $ENV{PT_KEEP};

    $self->_alloc_ports;
    $self->write_conf;

    push @INSTANCES, $self;

    return $self;
}


# accessors

sub dir { $_[0]{dir} }
sub store { $_[0]{store} }
sub pid { $_[0]{pid} }
sub port { my ($self, $n) = @_; $self->{ports}{ $n || 1 } }
sub base_url { my ($self, $n) = @_; 'http://127.0.0.1:' . $self->port($n) }
sub conf_file { "$_[0]{dir}/nginx.conf" }
sub error_log_file { "$_[0]{dir}/error.log" }
sub access_log_file { "$_[0]{dir}/access.log" }

sub error_log { slurp($_[0]->error_log_file) }
sub access_log { slurp($_[0]->access_log_file) }
sub stderr_log { slurp("$_[0]{dir}/stderr.log") }

sub is_running { defined $_[0]{pid} }


# lines matching one of these patterns are not held against the error log
sub allow_log {
    my ($self, @re) = @_;
    push @{ $self->{allow_log} }, @re;
    return $self;
}


# configuration

sub set_conf {
    my ($self, $conf) = @_;
    $self->{conf} = $conf;
    $self->_alloc_ports;
    $self->write_conf;
    return $self;
}


sub _alloc_ports {
    my ($self) = @_;

    while ($self->{conf} =~ /%%PORT(\d*)%%/g) {
        my $n = $1 || 1;
        $self->{ports}{$n} ||= free_port();
    }
}


sub _subst {
    my ($self, $text) = @_;

    $text =~ s/%%PORT(\d*)%%/$self->{ports}{ $1 || 1 }/g;
    $text =~ s/%%STORE%%/$self->{store}/g;
    $text =~ s/%%TESTDIR%%/$self->{dir}/g;

    return $text;
}


sub write_conf {
    my ($self) = @_;

    my $d = $self->{dir};
    my $conf = $self->_subst($self->{conf});

    my $main = "load_module $MODULE;\n\n"
        . "daemon off;\n"
        . "master_process on;\n"
        . "pid $d/nginx.pid;\n"
        . "lock_file $d/nginx.lock;\n"
        . "error_log $d/error.log " . ($ENV{PT_LOG_LEVEL} || "info") . ";\n";

    # workers would run as nobody and not reach the 0700 test directory
    $main .= "user root;\n" if $> == 0 && $conf !~ /^\s*user\s/m;

    $main .= "events { }\n" unless $conf =~ /^\s*events\s*\{/m;

    my $http = join '', map { "    $_\n" }
        "client_body_temp_path $d/client_body_temp;",
        "proxy_temp_path $d/proxy_temp;",
        "fastcgi_temp_path $d/fastcgi_temp;",
        "uwsgi_temp_path $d/uwsgi_temp;",
        "scgi_temp_path $d/scgi_temp;",
        "log_format pt '\$remote_addr [\$time_local] \"\$request\" \$status "
            . "\$body_bytes_sent pid=\$pid \"\$http_user_agent\"';",
        "access_log $d/access.log pt;";

    $conf =~ s/^(\s*http\s*\{[^\n]*\n)/$1$http/m
        or die "PT::Nginx: conf has no http block\n";

    spew($self->conf_file, "$main\n$conf");
}


# process control

sub start {
    my ($self) = @_;

    return $self if $self->try_start;

    my $log = $self->error_log . $self->stderr_log;
    die "nginx failed to start:\n$log";
}


# starts nginx; returns true once it listens and its workers run, false if
# the master exits first (the reason is then in error_log and stderr_log)
sub try_start {
    my ($self) = @_;

    die "nginx is already running\n" if $self->{pid};

    for my $try (1 .. 3) {
        my $mark = -s $self->error_log_file || 0;

        my $pid = fork // die "fork: $!";

        if ($pid == 0) {
            open STDIN, '<', '/dev/null';
            open STDOUT, '>>', "$self->{dir}/stderr.log";
            open STDERR, '>&', \*STDOUT;
            # PT_NGINX_PRELOAD: a library for nginx alone (a sanitizer's
            # runtime), not for the test's other programs
            $ENV{LD_PRELOAD} = $ENV{PT_NGINX_PRELOAD} if $ENV{PT_NGINX_PRELOAD};
            { no warnings 'exec';
              exec $NGINX, '-p', "$self->{dir}/", '-c', $self->conf_file,
                  '-e', $self->error_log_file; }
            print STDERR "exec $NGINX: $!\n";
            POSIX::_exit(127);    # no END blocks in the child
        }

        $self->{pid} = $pid;

        my $ok = $self->_wait_ready($mark);
        return 1 if $ok;

        # another process took a port between free_port() and nginx's bind
        my $log = substr($self->error_log, $mark);
        last unless $log =~ /bind\(\) to .* failed \(98/;

        # the bind error is not the module's: do not hold it against it
        spew($self->error_log_file, substr($self->error_log, 0, $mark));
        $self->{ports} = {};
        $self->_alloc_ports;
        $self->write_conf;
    }

    return 0;
}


sub _wait_ready {
    my ($self, $mark) = @_;

    my $n = $self->worker_count;
    my $deadline = time + $TIMEOUT;

    while (time < $deadline) {
        if (waitpid($self->{pid}, WNOHANG) == $self->{pid}) {
            $self->{exit_status} = $?;
            $self->{pid} = undef;
            return 0;
        }

        # workers that fail in their init are not respawned: the master
        # stays, useless
        if (substr($self->error_log, $mark) =~ /cannot be respawned/) {
            $self->kill_all;
            return 0;
        }

        if (@{ $self->worker_pids } >= $n) {
            my $ready = 1;
            for my $p (sort values %{ $self->{ports} }) {
                my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                              PeerPort => $p, Proto => 'tcp');
                $ready = 0, last unless $s;
                close $s;
            }
            return 1 if $ready;
        }

        sleep 0.02;
    }

    $self->kill_all;
    die "nginx did not become ready in $TIMEOUT s:\n" . $self->error_log;
}


# exit status of the master after try_start failed
sub exit_status { $_[0]{exit_status} }


sub worker_count {
    my ($self) = @_;
    return $self->{conf} =~ /^\s*worker_processes\s+(\d+)\s*;/m ? $1 : 1;
}


# pids of the master's cache manager (and loader), sorted
sub helper_pids { $_[0]->worker_pids(qr/cache (?:manager|loader) process/) }

# pids of the master's worker processes, sorted
sub worker_pids {
    my ($self, $re) = @_;
    $re //= qr/worker process/;

    my $master = $self->{pid} or return [];
    my @pids;

    opendir my $dh, '/proc' or die "/proc: $!";
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $stat = <$fh>;
        close $fh;
        next unless defined $stat;
        # pid (comm) state ppid ...
        my ($ppid) = $stat =~ /\)\s+\S+\s+(\d+)/ or next;
        next unless $ppid == $master;

        open $fh, '<', "/proc/$p/cmdline" or next;
        my $cmd = do { local $/; <$fh> } // '';
        close $fh;
        push @pids, $p if $cmd =~ $re;
    }
    closedir $dh;

    return [ sort { $a <=> $b } @pids ];
}


# waits until the master runs worker_count() workers none of which is in
# @$old; returns the new pids
sub wait_new_workers {
    my ($self, $old) = @_;

    my %old = map { $_ => 1 } @$old;
    my $n = $self->worker_count;
    my $deadline = time + $TIMEOUT;

    while (time < $deadline) {
        my $pids = $self->worker_pids;
        if (!grep({ $old{$_} } @$pids) && @$pids == $n) {
            return $pids;
        }
        sleep 0.02;
    }

    die "nginx: no new set of $n workers in $TIMEOUT s (now: @{ $self->worker_pids }, "
        . "old: @$old)\n" . $self->error_log;
}


# nginx -s reload; waits until the old workers have gone and new ones run
sub reload {
    my ($self) = @_;

    die "nginx is not running\n" unless $self->{pid};

    my $old = $self->worker_pids;
    $self->write_conf;

    local $ENV{LD_PRELOAD} = $ENV{PT_NGINX_PRELOAD} if $ENV{PT_NGINX_PRELOAD};
    my $out = `$NGINX -p $self->{dir}/ -c @{[ $self->conf_file ]} -e @{[ $self->error_log_file ]} -s reload 2>&1`;
    die "nginx -s reload failed: $out\n" if $?;

    return $self->wait_new_workers($old);
}


sub stop {
    my ($self, %opt) = @_;

    if ($self->{pid}) {
        my $pid = $self->{pid};
        kill 'TERM', $pid;

        my $deadline = time + $TIMEOUT;
        while (waitpid($pid, WNOHANG) != $pid) {
            if (time > $deadline) {
                diag("nginx $pid did not stop in $TIMEOUT s, killing it");
                $self->kill_all;
                last;
            }
            sleep 0.02;
        }
        $self->{exit_status} = $?;
        $self->{pid} = undef;
    }

    $self->check_error_log unless $opt{no_check};

    return $self;
}


sub restart {
    my ($self) = @_;
    $self->stop(no_check => 1);
    return $self->start;
}


# nginx -t on the configuration: returns (exit status, what nginx said)
sub test_conf {
    my ($self) = @_;

    my $log = "$self->{dir}/test-conf.log";
    unlink $log;

    local $ENV{LD_PRELOAD} = $ENV{PT_NGINX_PRELOAD} if $ENV{PT_NGINX_PRELOAD};
    my $out = `$NGINX -t -p $self->{dir}/ -c ${\ $self->conf_file} -e $log 2>&1`;

    return ($? >> 8, $out . slurp($log));
}


# SIGKILL to the master and all its workers: a crash
sub kill_all {
    my ($self) = @_;

    my $pid = $self->{pid} or return $self;
    my $workers = [ @{ $self->worker_pids }, @{ $self->helper_pids } ];

    kill 'KILL', $pid, @$workers;
    waitpid($pid, 0);
    $self->{pid} = undef;

    # workers are not our children: wait until they are gone (or zombies)
    my $deadline = time + $TIMEOUT;
    while (grep { _alive($_) } @$workers) {
        last if time > $deadline;
        sleep 0.02;
    }

    return $self;
}


# a process that exists and is not a zombie
sub _alive {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    return $stat !~ /\)\s+[ZX]\s/;
}


# SIGKILL to one worker (the first one by default); waits until the master
# has replaced it and returns the new worker pids
sub kill_worker {
    my ($self, $pid) = @_;

    my $old = $self->worker_pids;
    $pid //= $old->[0];
    die "no worker to kill\n" unless $pid;

    $self->allow_log(qr/worker process $pid exited on signal 9/);
    kill 'KILL', $pid;

    my %gone = ($pid => 1);
    my $n = $self->worker_count;
    my $deadline = time + $TIMEOUT;

    while (time < $deadline) {
        my $pids = $self->worker_pids;
        return $pids if @$pids == $n && !grep { $gone{$_} } @$pids;
        sleep 0.02;
    }

    die "nginx: worker $pid was not replaced in $TIMEOUT s\n";
}


# lines of error.log with [alert], [crit] or [emerg] not allowed by allow_log
sub bad_log_lines {
    my ($self) = @_;

    my @bad;
    for my $line (split /\n/, $self->error_log) {
        next unless $line =~ $BAD_LOG;
        next if grep { $line =~ $_ } @{ $self->{allow_log} };
        push @bad, $line;
    }
    return @bad;
}


sub check_error_log {
    my ($self) = @_;

    my @bad = $self->bad_log_lines;
    ok(!@bad, 'error.log has no [alert], [crit] or [emerg]')
        or diag(join "\n", @bad);
}


# nginx still running at the end (the test died, or did not stop it) is
# stopped; [alert], [crit] or [emerg] in its log then fail the test file
END {
    my $status = $?;
    for my $t (@INSTANCES) {
        next unless $t->{pid};
        $t->stop(no_check => 1);
        my @bad = $t->bad_log_lines;
        ok(0, "error.log of $t->{dir} has no [alert], [crit] or [emerg]")
            or diag(join "\n", @bad) if @bad;
    }
    $? = $status;
}


# HTTP

# $t->request(METHOD, PATH_OR_URL, json => DATA | body => BYTES,
#             headers => {...}, auth => [USER, PASS], chunked => 1, port => N,
#             timeout => SECONDS (default 30; no answer in time: status 599))
# returns { status, reason, headers (lowercase names), content, json }
# (json: the decoded body, undef when it is not JSON)
sub request {
    my ($self, $method, $path, %opt) = @_;

    my $url = $path =~ m{^https?://} ? $path : $self->base_url($opt{port}) . $path;

    my %headers = %{ $opt{headers} || {} };
    my $content;

    if (exists $opt{json}) {
        $content = $JSON->encode($opt{json});
        $headers{'Content-Type'} //= 'application/json';
    } elsif (defined $opt{body}) {
        # raw bodies are malformed JSON on purpose: still sent as JSON
        $content = $opt{body};
        $headers{'Content-Type'} //= 'application/json';
    }

    if ($opt{auth}) {
        $headers{Authorization} = 'Basic '
            . encode_base64(join(':', @{ $opt{auth} }), '');
    }

    my %args = (headers => \%headers);

    if (defined $content) {
        if ($opt{chunked}) {
            # HTTP::Tiny sends a code reference's output chunked
            my @parts = ($content);
            $args{content} = sub { shift @parts };
        } else {
            $args{content} = $content;
        }
    }

    my $ua = HTTP::Tiny->new(keep_alive => 0, timeout => $opt{timeout} || 30,
                             agent => 'pt-test');
    my $res = $ua->request($method, $url, \%args);

    return _response($res->{status}, $res->{reason}, $res->{headers},
                     $res->{content});
}


sub get { my ($self, $path, %o) = @_; $self->request('GET', $path, %o) }
sub head { my ($self, $path, %o) = @_; $self->request('HEAD', $path, %o) }
sub delete { my ($self, $path, %o) = @_; $self->request('DELETE', $path, %o) }

sub post { shift->_with_body('POST', @_) }
sub put { shift->_with_body('PUT', @_) }
sub patch { shift->_with_body('PATCH', @_) }

sub _with_body {
    my ($self, $method, $path, $data, %o) = @_;
    if (ref $data) {
        $o{json} = $data;
    } elsif (defined $data) {
        $o{body} = $data;
    }
    return $self->request($method, $path, %o);
}


# sends BYTES as they are on a new connection and reads the answer until the
# server closes the connection; returns the same hash as request().
# Options: port => N, timeout => seconds (default 30), shutdown => 1 (close
# the sending side after BYTES)
sub raw {
    my ($self, $bytes, %opt) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->port($opt{port}),
                                  Proto => 'tcp', Timeout => 10)
        or die "connect: $!";
    $s->autoflush(1);
    print $s $bytes;
    shutdown($s, 1) if $opt{shutdown};

    # the answer is read until it is complete (by its Content-Length), the
    # server closes, or the timeout (then status 599)
    my $in = '';
    my $timeout = $opt{timeout} || 30;
    my $ok = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm $timeout;
        while (1) {
            my $n = sysread($s, my $buf, 65536);
            last unless $n;
            $in .= $buf;
            last if _complete($in, $bytes =~ /^HEAD /);
        }
        alarm 0;
        1;
    };
    alarm 0;
    close $s;
    return _response(599, "no answer in $timeout s", {}, $in) unless $ok;

    my ($head, $body) = split /\r\n\r\n/, $in, 2;
    $head //= '';
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status, $reason) = ($status_line // '') =~ m{^HTTP/\d\.\d (\d{3}) ?(.*)};

    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $h{ lc $k } = exists $h{ lc $k } ? "$h{lc $k}, $v" : $v;
    }

    if (($h{'transfer-encoding'} // '') =~ /chunked/i && defined $body) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $out .= substr($body, 0, $len, '');
            $body =~ s/^\r\n//;
        }
        $body = $out;
    }

    return _response($status // 599, $reason, \%h, $body);
}


# a whole response with a Content-Length (or, chunked, its last chunk)
sub _complete {
    my ($in, $head_only) = @_;

    my $end = index($in, "\r\n\r\n");
    return 0 if $end < 0;
    return 1 if $head_only;
    my $head = substr($in, 0, $end);

    if ($head =~ /^Content-Length:\s*(\d+)/mi) {
        return length($in) - $end - 4 >= $1;
    }
    if ($head =~ /^Transfer-Encoding:\s*chunked/mi) {
        return $in =~ /\r\n0\r\n\r\n\z/;
    }
    return 0;
}


sub _response {
    my ($status, $reason, $headers, $content) = @_;

    my $json;
    if (defined $content && length $content) {
        $json = eval { $JSON->decode($content) };
    }

    return {
        status  => $status,
        reason  => $reason,
        headers => $headers || {},
        content => $content // '',
        json    => $json,
    };
}


1;
