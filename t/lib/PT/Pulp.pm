package PT::Pulp;

# Helpers for the admin API tests: the usual nginx.conf, paths, the shapes
# of Pulp objects, and shortcuts that die with the response when the server
# does not answer as a setup step needs.

use strict;
use warnings;

use Exporter qw(import);
use Test::More ();
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use Time::Local qw(timegm);
use PT::Util qw(slurp);

our @EXPORT = qw(
    $API $REMOTES $DISTS $TASKS $UUID_RE $TS_RE
    @SECRETS @REMOTE_KEYS @DIST_KEYS @TASK_KEYS
    admin_conf create_remote create_dist task_of list_all
    make_cert parallel ts_epoch dump_json keys_of uuid4 allow_tokens
    is_field_errors is_json_status
);

our $API = '/pulp/api/v3';
our $REMOTES = "$API/remotes/container/pull-through/";
our $DISTS = "$API/distributions/container/pull-through/";
our $TASKS = "$API/tasks/";

our $UUID_RE = qr/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/;
our $TS_RE = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;

our @SECRETS = qw(client_key proxy_username proxy_password username password);

our @REMOTE_KEYS = qw(pulp_href prn pulp_created pulp_last_updated name url
    ca_cert client_cert tls_validation proxy_url pulp_labels
    download_concurrency max_retries policy total_timeout connect_timeout
    sock_connect_timeout sock_read_timeout headers rate_limit includes
    excludes tag_ttl hidden_fields);

our @DIST_KEYS = qw(pulp_href prn pulp_created pulp_last_updated base_path
    content_guard hidden pulp_labels name remote distributions private
    description retain);

our @TASK_KEYS = qw(pulp_href prn pulp_created pulp_last_updated name state
    error started_at finished_at unblocked_at created_resources child_tasks
    progress_reports);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;


# nginx.conf with the admin API on /pulp/api/v3/ and the registry on /v2/.
# Options: workers, store_args (" map_size=..."), listen_args (" reuseport"),
# http, server, location (extra directives at those levels), servers (more
# server blocks).
sub admin_conf {
    my (%o) = @_;

    my $workers = $o{workers} ? "worker_processes $o{workers};\n" : '';
    $o{$_} //= '' for qw(store_args listen_args http server location servers main);

    return <<"EOF";
$workers$o{main}
http {
    pullthrough_store %%STORE%%$o{store_args};
    $o{http}

    server {
        listen 127.0.0.1:%%PORT%%$o{listen_args};
        $o{server}

        location /pulp/api/v3/ {
            pullthrough_admin;
            $o{location}
        }

        location /v2/ {
            pullthrough_registry;
        }
    }

    $o{servers}
}
EOF
}


# POST a remote; dies unless 201; returns the remote.
# With PT_TRANSPORT=curl in the environment, remotes that would be reached
# through nginx's proxy module get a ca_cert of a CA of their own, which
# sends their exchanges through libcurl: the same tests then cover that
# transport (a CA does not matter to an http upstream).
my $CURL_CA;

sub create_remote {
    my ($t, %fields) = @_;

    $fields{url} //= 'https://registry-1.docker.io';

    if (($ENV{PT_TRANSPORT} // '') eq 'curl' && $fields{url} =~ /^http:/
        && !grep { defined $fields{$_} } qw(ca_cert client_cert proxy_url))
    {
        $CURL_CA //= do {
            my $dir = tempdir('pt-ca-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
            (make_cert($dir, 'pt-transport-ca'))[0];
        };
        $fields{ca_cert} = $CURL_CA;
    }
    my $r = $t->post($REMOTES, \%fields);
    die "create remote: " . dump_json($r) . "\n"
        unless $r->{status} == 201 && ref $r->{json} eq 'HASH';

    return $r->{json};
}


# POST a distribution; dies unless its task completed; returns the
# distribution
sub create_dist {
    my ($t, %fields) = @_;

    my $r = $t->post($DISTS, \%fields);
    my $task = task_of($t, $r);
    die "create distribution: task " . dump_json($task) . "\n"
        unless $task->{state} eq 'completed'
            && @{ $task->{created_resources} || [] } == 1;

    my $d = $t->get($task->{created_resources}[0]);
    die "created distribution: " . dump_json($d) . "\n"
        unless $d->{status} == 200;

    return $d->{json};
}


# the task of a 202 {"task": href} response; dies on anything else.
# %opt go to the GET of the task (auth => [...], port => N)
sub task_of {
    my ($t, $r, %opt) = @_;

    die "expected 202 {task}, got " . dump_json($r) . "\n"
        unless $r->{status} == 202 && ref $r->{json} eq 'HASH'
            && defined $r->{json}{task};

    my $tr = $t->get($r->{json}{task}, %opt);
    die "task $r->{json}{task}: " . dump_json($tr) . "\n"
        unless $tr->{status} == 200 && ref $tr->{json} eq 'HASH';

    return $tr->{json};
}


# all results of a list, following "next"; dies on an error
sub list_all {
    my ($t, $url) = @_;

    my @all;
    my $pages = 0;
    while (defined $url) {
        my $r = $t->get($url);
        die "GET $url: " . dump_json($r) . "\n"
            unless $r->{status} == 200 && ref $r->{json} eq 'HASH';
        push @all, @{ $r->{json}{results} };
        $url = $r->{json}{next};
        die "more than 1000 pages at $url\n" if ++$pages > 1000;
    }

    return \@all;
}


# a self-signed certificate and its key, made with openssl into $dir
sub make_cert {
    my ($dir, $cn) = @_;

    my $out = `openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=$cn -keyout $dir/$cn.key -out $dir/$cn.crt 2>&1`;
    die "openssl req: $out" if $?;

    return (slurp("$dir/$cn.crt"), slurp("$dir/$cn.key"));
}


# runs $code->($i) for $i in 0..$n-1 in $n processes that start together;
# returns the results (each JSON-encodable) in order of $i
sub parallel {
    my ($n, $code) = @_;

    my $dir = tempdir('pt-par-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    pipe(my $gate_r, my $gate_w) or die "pipe: $!";

    my @pids;
    for my $i (0 .. $n - 1) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $gate_w;
            my $wait = <$gate_r>;     # EOF when the parent opens the gate
            my $res = eval { $code->($i) };
            $res = { error => "$@" } if $@;
            if (open my $fh, '>', "$dir/$i") {
                print $fh $JSON->encode([$res]);
                close $fh;
            }
            POSIX::_exit(0);          # no END blocks in the child
        }
        push @pids, $pid;
    }

    close $gate_r;
    close $gate_w;
    waitpid($_, 0) for @pids;

    return [ map { my $d = slurp("$dir/$_"); length $d ? $JSON->decode($d)->[0] : { error => 'no result' } } 0 .. $n - 1 ];
}


# seconds since the epoch of an API timestamp (with microseconds)
sub ts_epoch {
    my ($ts) = @_;
    my ($y, $mo, $d, $h, $mi, $s, $us) =
        $ts =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z$/
        or return undef;
    return timegm($s, $mi, $h, $d, $mo - 1, $y) + $us / 1e6;
}


sub dump_json {
    my ($data) = @_;
    return $JSON->encode($data);
}


sub keys_of {
    my ($h) = @_;
    return [ sort keys %{ ref $h eq 'HASH' ? $h : {} } ];
}


# a random lowercase UUIDv4
sub uuid4 {
    my @b = map { int rand 256 } 1 .. 16;
    $b[6] = ($b[6] & 0x0f) | 0x40;
    $b[8] = ($b[8] & 0x3f) | 0x80;
    my $h = join '', map { sprintf '%02x', $_ } @b;
    return join '-', substr($h, 0, 8), substr($h, 8, 4), substr($h, 12, 4),
        substr($h, 16, 4), substr($h, 20);
}


# the methods of an Allow header, upper-cased and sorted
sub allow_tokens {
    my ($r) = @_;
    my $allow = $r->{headers}{allow} // '';
    return [ sort map { uc } grep { length } split /[\s,]+/, $allow ];
}


# one test: a 400 whose JSON body has exactly the given fields, each a list
# of messages holding the given one (a string, a Regexp, or undef: any)
sub is_field_errors {
    my ($r, $want, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    my $j = $r->{json};
    my $ok = $r->{status} == 400 && _is_json_type($r) && ref $j eq 'HASH'
        && join(',', sort keys %$j) eq join(',', sort keys %$want);

    for my $f (sort keys %$want) {
        last unless $ok;
        my $msgs = $j->{$f};
        $ok = ref $msgs eq 'ARRAY' && @$msgs
            && !grep({ !defined || ref } @$msgs);
        next unless $ok && defined $want->{$f};
        my $m = $want->{$f};
        $ok = ref $m eq 'Regexp' ? grep({ $_ =~ $m } @$msgs)
                                 : grep({ $_ eq $m } @$msgs);
    }

    Test::More::ok($ok, $name)
        or Test::More::diag("got $r->{status} "
            . ($r->{headers}{'content-type'} // '-') . " $r->{content}\n"
            . "want 400 " . dump_json({ map { $_ => defined $want->{$_} ? "$want->{$_}" : '*' } keys %$want }));
}


# one test: status $status, a JSON content type, and a JSON body equal to
# $body when given
sub is_json_status {
    my ($r, $status, $body, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    my $ok = $r->{status} == $status && _is_json_type($r)
        && defined $r->{json};
    $ok &&= dump_json($r->{json}) eq dump_json($body) if defined $body;

    Test::More::ok($ok, $name)
        or Test::More::diag("got $r->{status} "
            . ($r->{headers}{'content-type'} // '-') . " $r->{content}\n"
            . "want $status " . (defined $body ? dump_json($body) : '(any JSON)'));
}


sub _is_json_type {
    my ($r) = @_;
    return ($r->{headers}{'content-type'} // '') =~ m{^application/json\b}i;
}


1;
