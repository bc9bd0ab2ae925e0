package PT::ConnectProxy;

# A small forward proxy of the harness's own, for names that cannot resolve
# here (registry-1.docker.io, auth.docker.io, ...): it never resolves what
# a client asks for, it looks the target up in a map to a local address.
# For a real proxy on real addresses there is PT::Tinyproxy.
#
#   my $px = PT::ConnectProxy->new(map => {
#       'registry-1.docker.io:443' => '127.0.0.1:' . $reg->port,
#       'auth.docker.io:443'       => '127.0.0.1:' . $iss_tls_port,
#   })->start;
#   $px->map('auth.docker.io:80' => $iss->host);   # before or after start
#   $px->url;              # http://127.0.0.1:PORT
#   my @r = $px->requests; # ({ method, target, mapped_to, status, ... }, ...)
#   $px->reset_requests;
#   $px->stop;             # also done in DESTROY and at exit
#
# new(%opt):
#   map  => { 'HOST:PORT' => 'ADDR:PORT', ... }   where a target goes
#           (HOST case-insensitive; ADDR an IP address, [v6] in brackets)
#   auth => [USER, PASSWORD]   require Proxy-Authorization: Basic with
#           these; without them, or with others: 407 and
#           Proxy-Authenticate: Basic realm="pt"
#   dir, port, addr (the address to listen on, default 127.0.0.1)
# map(PAIRS) adds or changes entries (undef as ADDR:PORT removes one), also
# while running (a file in dir the connections read at each request); map()
# returns the map (a copy).
#
# Requests, one a connection (the connection is closed after it):
#   CONNECT HOST:PORT      target unknown: 502; address refuses: 502;
#                          else "HTTP/1.1 200 Connection established" and
#                          bytes relayed both ways until both sides have
#                          closed (a side's end of data is passed on as a
#                          half-close)
#   GET http://HOST[:PORT]/PATH HTTP/1.1   (absolute form, any method, port
#                          80 by default): forwarded in origin form
#                          (METHOD /PATH) with the client's headers less
#                          Proxy-Authorization, Proxy-Connection, Connection
#                          and Keep-Alive, plus Connection: close; the body
#                          (if any) and the answer relayed as they come.
#                          Target unknown or refusing: 502.
#   anything else          400 (an origin-form request, https:// URLs)
# Every request is logged (requests.log, one JSON object a line) before the
# client gets the head of its answer: { method, target (HOST:PORT for
# CONNECT, the absolute URL else), host (HOST:PORT the map was asked for),
# path (absolute form), mapped_to (ADDR:PORT, undef when unknown), status
# (407, 400, 502, 200 for a tunnel, or the upstream's status), error (why
# a 400, 407 or 502), user and password (decoded from Proxy-Authorization,
# when sent), headers (lowercase names), time, pid }.
#
# The server is a process forked by start() that forks again for each
# connection, as every PT::Server does.

use strict;
use warnings;

use Carp qw(croak);
use Fcntl qw(:flock);
use File::Temp qw(tempdir);
use IO::Socket::IP;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use POSIX ();
use Time::HiRes qw(time);

use parent 'PT::Server';
use PT::Util qw(slurp spew match_requests);

my $JSON = JSON::PP->new->utf8->canonical;

my %REASON = (200 => 'OK', 400 => 'Bad Request',
              407 => 'Proxy Authentication Required', 502 => 'Bad Gateway');


sub new {
    my ($class, %opt) = @_;

    my %known = map { $_ => 1 } qw(map auth dir port addr);
    my @bad = grep { !$known{$_} } sort keys %opt;
    croak "PT::ConnectProxy->new: unknown option(s) @bad" if @bad;

    if (my $cred = $opt{auth}) {
        croak "PT::ConnectProxy->new: auth is [USER, PASSWORD] "
            . "(no ':' in USER)"
            unless ref $cred eq 'ARRAY' && @$cred == 2 && defined $cred->[0]
                && defined $cred->[1] && $cred->[0] !~ /:/;
    }
    croak "PT::ConnectProxy->new: map is a hash"
        if defined $opt{map} && ref $opt{map} ne 'HASH';

    my $self = bless {
        dir => $opt{dir} || tempdir('pt-proxy-XXXXXXXX', TMPDIR => 1,
                                    CLEANUP => !$ENV{PT_KEEP}),
        port => $opt{port},
        addr => $opt{addr} // '127.0.0.1',
        auth => $opt{auth} && [ @{ $opt{auth} } ],
        targets => {},
        pid => undef,
        seen => 0,
    }, $class;

    croak "PT::ConnectProxy->new: no directory $self->{dir}"
        unless -d $self->{dir};
    $self->map(%{ $opt{map} || {} });

    return $self->_track;
}


sub name { 'connect proxy' }

# (USER, PASSWORD), or () without auth
sub credentials { $_[0]{auth} ? @{ $_[0]{auth} } : () }


# map(): the map; map(HOST:PORT => ADDR:PORT, ...): adds, changes or (undef)
# removes entries
sub map {
    my ($self, @pairs) = @_;

    croak "PT::ConnectProxy->map: pairs of HOST:PORT => ADDR:PORT"
        if @pairs % 2;

    while (my ($from, $to) = splice @pairs, 0, 2) {
        my $key = _target_key($from)
            // croak "PT::ConnectProxy->map: '$from' is not HOST:PORT";
        if (defined $to) {
            croak "PT::ConnectProxy->map: '$to' is not ADDR:PORT"
                unless _split_hostport($to);
            $self->{targets}{$key} = $to;
        } else {
            delete $self->{targets}{$key};
        }
    }

    my $f = "$self->{dir}/map.json";
    spew("$f.tmp", $JSON->encode($self->{targets}));
    rename "$f.tmp", $f or die "rename $f: $!";

    return +{ %{ $self->{targets} } };
}


# the requests whose method matches $method (a string, or undef for any)
# and whose target matches $re (a regexp or string, or undef for any)
sub requests_matching {
    my ($self, $method, $re) = @_;
    return match_requests('target', $method, $re, $self->requests);
}


# helpers of map and the connections

# (HOST, PORT) of "HOST:PORT" or "[V6]:PORT", or ()
sub _split_hostport {
    my ($s) = @_;
    return () unless defined $s
        && $s =~ /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})\z/
        && $2 > 0 && $2 < 65536;
    my ($h, $p) = ($1, $2 + 0);
    $h =~ s/^\[(.*)\]\z/$1/;
    return ($h, $p);
}

# "host:port" in the map's spelling (lowercase host), or undef
sub _target_key {
    my ($s) = @_;
    my ($h, $p) = _split_hostport($s) or return undef;
    $h = lc $h;
    return ($h =~ /:/ ? "[$h]" : $h) . ":$p";
}


# in a connection's process

sub _serve {
    my ($self, $c) = @_;

    binmode $c;
    my $server = getppid();

    local $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm 30;
    my $hd = $self->_read_head($c);
    alarm 0;

    my ($method, $target, $proto, $rest) = @$hd{qw(method target proto rest)};
    my %h = %{ $hd->{headers} };
    my @raw = @{ $hd->{raw} };

    my $req = { method => $method, target => $target,
                host => undef, mapped_to => undef, headers => \%h,
                time => time, pid => $$ };

    if (($h{'proxy-authorization'} // '') =~ /^Basic\s+(\S+)/i) {
        my ($u, $p) = split /:/, decode_base64($1), 2;
        $req->{user} = $u;
        $req->{password} = $p;
    }

    if (my $cred = $self->{auth}) {
        unless (defined $req->{user} && $req->{user} eq $cred->[0]
                && defined $req->{password}
                && $req->{password} eq $cred->[1])
        {
            return $self->_refuse($c, $req, 407, 'proxy authentication',
                                  'Proxy-Authenticate: Basic realm="pt"');
        }
    }

    my ($key, $path);
    if ($req->{method} eq 'CONNECT') {
        $key = _target_key($target);
    } elsif (($target // '') =~ m{^http://([^/?#]+)(.*)\z}si) {
        my ($auth, $p) = ($1, $2);
        $auth .= ':80' unless $auth =~ /:\d+\z/;
        $key = _target_key($auth);
        $path = length $p ? $p : '/';
        $path = "/$path" if $path =~ /^\?/;
        $req->{path} = $path;
    }
    return $self->_refuse($c, $req, 400, 'not CONNECT HOST:PORT or an '
                          . 'absolute http:// request')
        unless defined $key && defined $proto && $proto =~ m{^HTTP/1\.[01]\z};
    $req->{host} = $key;

    my $map = eval { $JSON->decode(slurp("$self->{dir}/map.json")) }
        || $self->{targets};
    my $to = $map->{$key};
    return $self->_refuse($c, $req, 502, "no map entry for $key")
        unless defined $to;
    $req->{mapped_to} = $to;

    my ($ah, $ap) = _split_hostport($to);
    my $up = IO::Socket::IP->new(PeerHost => $ah, PeerPort => $ap,
                                 Proto => 'tcp', Timeout => 5);
    return $self->_refuse($c, $req, 502, "connect $to: $!") unless $up;
    binmode $up;

    if ($req->{method} eq 'CONNECT') {
        $req->{status} = 200;
        $self->_log($req);
        _write($c, "HTTP/1.1 200 Connection established\r\n\r\n") or return;
        if (length $rest) {
            _write($up, $rest) or return;
        }
        _relay($c, $up, $server);
        return;
    }

    my %drop = map { $_ => 1 }
        qw(proxy-authorization proxy-connection connection keep-alive);
    my $out = "$req->{method} $path $proto\r\n"
        . join('', map { "$_->[0]: $_->[1]\r\n" }
                   grep { !$drop{ lc $_->[0] } } @raw)
        . "Connection: close\r\n\r\n" . $rest;
    _write($up, $out) or return;

    _relay($c, $up, $server, sub { $self->_watch_answer($req, @_) });
}


# The upstream's answer, as it comes (DATA: what came so far, EOF: the
# upstream ended): the final status is logged before the client gets a
# byte of its head; interim (1xx) heads go to the client as they come.
# Returns (BYTES for the client, DATA still held or undef when done,
# END: true to close, after a 502 of ours).
sub _watch_answer {
    my ($self, $req, $data, $eof) = @_;

    my $send = '';
    while ($data =~ m{\A(HTTP/\d\.\d 1\d\d\b.*?\r?\n\r?\n)}s) {
        $send .= $1;
        substr($data, 0, length $1) = '';
    }

    if ($data =~ m{\AHTTP/\d\.\d ([2-9]\d\d)\b[^\n]*\n}) {
        $req->{status} = $1 + 0;
        $self->_log($req);
        return ($send . $data, undef, 0);
    }

    my $waiting = $data =~ /\A(?:HTTP\/\d\.\d 1\d\d\b|[^\n]*\z)/
        && length $data < 65536;
    return ($send, $data, 0) if $waiting && !$eof;

    $req->{status} = 502;
    $req->{error} = length $data ? 'not an HTTP answer'
                                 : 'closed without an answer';
    $self->_log($req);
    return ($send . _answer(502, $req->{error}), undef, 1);
}


# answers a request with an error (logged first) and closes
sub _refuse {
    my ($self, $c, $req, $status, $why, @extra) = @_;
    $req->{status} = $status;
    $req->{error} = $why;
    $self->_log($req);
    _write($c, _answer($status, $why, @extra));
    close $c;
    return;
}


sub _answer {
    my ($status, $why, @extra) = @_;
    my $body = "$why\n";
    return "HTTP/1.1 $status " . ($REASON{$status} // 'Status') . "\r\n"
        . "Content-Type: text/plain\r\n"
        . 'Content-Length: ' . length($body) . "\r\n"
        . join('', map { "$_\r\n" } @extra)
        . "Connection: close\r\n\r\n" . $body;
}


sub _log {
    my ($self, $req) = @_;
    open my $log, '>>', $self->log_file or return;
    flock($log, LOCK_EX);
    print $log $JSON->encode($req), "\n";
    close $log;
}


# Relays bytes between the client $c and the upstream $up until both have
# ended (the end of one side's data is passed on as a half-close), or
# either fails, or the server is gone. $watch (optional) is given what the
# upstream sends until it says it is done; see _watch_answer.
sub _relay {
    my ($c, $up, $server, $watch) = @_;

    my %to = (fileno($c) => [ $c, $up ], fileno($up) => [ $up, $c ]);
    my %open = map { $_ => 1 } keys %to;
    my $held = $watch ? '' : undef;
    my $ufd = fileno $up;

    RELAY: while (%open) {
        my $rin = '';
        vec($rin, $_, 1) = 1 for keys %open;
        my $n = select(my $rout = $rin, undef, undef, 1);
        if ($n < 0) {
            next if $!{EINTR};
            last;
        }
        last if getppid() != $server;
        next unless $n;

        for my $fd (grep { vec($rout, $_, 1) } keys %open) {
            my ($from, $dest) = @{ $to{$fd} };
            my $got = sysread($from, my $buf, 65536);
            next if !defined $got && $!{EINTR};

            if ($fd == $ufd && defined $held) {
                $held .= $buf if $got;
                (my $send, $held, my $end) = $watch->($held, !$got);
                _write($dest, $send) or return;
                last RELAY if $end;
                next if $got;
            }
            elsif ($got) {
                _write($dest, $buf) or return;
                next;
            }

            delete $open{$fd};
            shutdown($dest, 1);
        }
    }
    close $c;
    close $up;
}


sub _write {
    my ($s, $data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($s, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $!{EINTR};
            return 0;
        }
        $off += $n;
    }
    return 1;
}


1;
